"""Surprising merges: where the learned tree joins low what the known taxonomy keeps far apart.

For an internal node v of the learned tree T with children a (the selected group) and b (its partner):

- ``rho`` = rho_T(v) = (|v| - 1) / (K - 1), the normalised size of the learned clade (docs/metrics.md);
- ``truth_rho`` = the mean, over the pairs that v joins (one side in a, the other in b), of rho_H between their
  classes in the truth H. Pairs are class pairs (cluster k = class k) or, with ``counts``, point pairs weighted by
  the (K, C) table, exactly the pairs LHD charges to v;
- ``contradiction`` = max(0, truth_rho - rho): how much higher the truth joins these pairs than the tree does;
- ``strength`` = mass / points from the merge evidence: the mean probability that each reassigned point of a put
  on b under the masked softmax (1 for trees without evidence);
- ``surprise`` = contradiction * strength, in [0, 1].

Only the pairs across a and b count, so a clade that is surprising because of one bad merge below it does not
make every ancestor surprising too. Cost: each side is a sparse count over its classes' truth ancestors, merged
small-into-large: O(nnz(counts) * d_H * log K) for a truth of depth d_H (O(K d_H log K) without counts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..hierarchy import Hierarchy

_ROWS = 1 << 22  # logits elements per chunk when looking up the moved points


def surprising_merges(
    tree: Hierarchy,
    target_hierarchy: Hierarchy,
    *,
    logits: torch.Tensor | None = None,
    counts: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    group_names: Sequence[str] | Mapping[int, str] | None = None,
    top: int | None = None,
    n_points: int = 10,
) -> list[dict[str, Any]]:
    """The learned tree's merges ranked by how strongly they contradict the known taxonomy, most surprising first.

    Args:
        tree: binary tree over K clusters (from `l2h`; its ``evidence`` weighs each merge).
        target_hierarchy: the true tree over C classes.
        logits: optional (N, K) logits the tree was built from: each record then lists the points that drove
            the merge.
        counts: optional (K, C) table n[k, c] = points predicted k of class c; pairs are then point pairs.
            Without it K must equal C and cluster k is class k.
        names: optional C class names for the labels.
        group_names: names of truth groups for the labels: a sequence indexed by
            ``target_hierarchy.coarse_groups()`` ids, or a mapping from truth node id to name.
        top: return only the `top` most surprising records (None: all K-1).
        n_points: at most this many point indices per record.

    Returns:
        One dict per internal node: ``node``, ``leaves`` (selected side's leaves, partner side's leaves),
        ``surprise``, ``contradiction``, ``strength``, ``rho``, ``truth_rho``, ``truth_lca`` (the truth node that
        is the LCA of most of the joined pairs; None when no pair is joined), ``truth_level`` (its height in the
        truth, 0 for a class), ``label``, ``evidence`` (that merge's values or None) and, with `logits`,
        ``points``: indices of a's points whose masked-softmax choice is in b, most probable first.
        Ties in surprise keep node order.

    Example:
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 2], [1, 3], [4, 5]], num_leaves=4)  # joins 0 with 2 first
        >>> truth = Hierarchy.from_levels([[0, 0, 1, 1]])  # {0, 1} and {2, 3}
        >>> [r["node"] for r in surprising_merges(tree, truth, names="abcd", top=2)]
        [4, 5]
        >>> surprising_merges(tree, truth, names="abcd", top=1)[0]["label"]
        'a + c'
    """
    K, C = tree.num_leaves, target_hierarchy.num_leaves
    if not isinstance(tree, Hierarchy) or not tree.is_binary:
        raise ValueError("tree must be a binary Hierarchy (for example from l2h)")
    if not isinstance(target_hierarchy, Hierarchy):
        raise ValueError(f"target_hierarchy must be a Hierarchy, got {type(target_hierarchy).__name__}")
    table = _table(counts, K, C)
    if names is not None and len(names) != C:
        raise ValueError(f"names has {len(names)} entries for the {C} classes of target_hierarchy")
    if top is not None and (isinstance(top, bool) or int(top) != top or top < 0):
        raise ValueError(f"top must be a non-negative integer or None, got {top!r}")
    if logits is not None:
        logits = torch.as_tensor(logits)
        if logits.ndim != 2 or logits.shape[1] != K or not logits.is_floating_point():
            raise ValueError(
                f"logits must be a floating-point (N, {K}) tensor, got {tuple(logits.shape)} {logits.dtype}"
            )
    if K == 1:
        return []

    truth = _Truth(target_hierarchy)
    cross, lca = _cross_pairs(tree, truth, table)
    sizes = tree.sizes()
    ev = {k: v.tolist() for k, v in tree.evidence.items()} if tree.evidence else None
    records = []
    for i, (a, b) in enumerate(tree.children):
        pairs, rho_sum = cross[i]
        rho = (sizes[K + i] - 1) / (K - 1)
        truth_rho = rho_sum / pairs if pairs > 0 else math.nan
        contradiction = max(0.0, truth_rho - rho) if pairs > 0 else 0.0
        strength = _strength(ev, i)
        records.append(
            {
                "node": K + i,
                "surprise": contradiction * strength,
                "contradiction": contradiction,
                "strength": strength,
                "rho": rho,
                "truth_rho": truth_rho,
                "truth_lca": lca[i],
                "truth_level": None if lca[i] is None else truth.height[lca[i]],
                "evidence": None if ev is None else {k: v[i] for k, v in ev.items()},
                "_sides": (a, b),
            }
        )
    records.sort(key=lambda r: -r["surprise"])  # stable: ties keep node order
    if top is not None:
        records = records[: int(top)]
    groups = _group_labels(target_hierarchy, truth, group_names)
    majority = table.argmax(1).tolist() if table is not None else list(range(K))
    nonempty = (table.sum(1) > 0).tolist() if table is not None else [True] * K
    assign = None if logits is None else logits.argmax(1)
    for r in records:
        a, b = r.pop("_sides")
        left, right = tree.leaves(a), tree.leaves(b)
        r["leaves"] = (left, right)
        sides = [[majority[k] for k in side if nonempty[k]] for side in (left, right)]
        r["label"] = " + ".join(_side_label(cls, names, groups) for cls in sides)
        if logits is not None:
            r["points"] = _moved_points(logits, assign, left, right, n_points)
    return [{k: r[k] for k in _ORDER if k in r} for r in records]


_ORDER = (
    "node", "leaves", "surprise", "contradiction", "strength", "rho", "truth_rho",
    "truth_lca", "truth_level", "label", "evidence", "points",
)  # fmt: skip


def _table(counts: Any, K: int, C: int) -> torch.Tensor | None:
    if counts is None:
        if K != C:
            raise ValueError(
                f"the tree has {K} leaves and target_hierarchy {C}: pass counts=(K, C) to relate clusters to classes"
            )
        return None
    table = torch.as_tensor(counts).detach().cpu().double()
    if table.shape != (K, C):
        raise ValueError(f"counts must have shape (K, C) = ({K}, {C}), got {tuple(table.shape)}")
    if not bool(torch.isfinite(table).all()) or bool((table < 0).any()):
        raise ValueError("counts must be finite and non-negative")
    return table


def _strength(ev: dict[str, list] | None, i: int) -> float:
    if ev is None:
        return 1.0
    if "mass" not in ev or "points" not in ev:
        raise ValueError(
            "tree.evidence needs 'mass' and 'points' to weigh the merges (or pass a tree without evidence)"
        )
    mass, points = ev["mass"][i], ev["points"][i]
    if not points > 0 or math.isnan(mass):
        return 0.0
    return min(1.0, max(0.0, mass / points))


class _Truth:
    """Parent, rho and height of every node of the true tree, and each class's path to the root."""

    def __init__(self, H: Hierarchy) -> None:
        C = H.num_leaves
        self.parent = H.parents.tolist()
        self.root = H.root
        sizes = H.sizes()
        self.rho = [(s - 1) / (C - 1) if C > 1 else 0.0 for s in sizes]
        self.height = [0.0] * C + [float(h) for h in H.heights]
        # Pairs with LCA at or below u count with weight rho(u) - rho(parent(u)): summed up the path this
        # telescopes to rho(LCA).
        self.weight = [self.rho[u] - (self.rho[p] if p >= 0 else 0.0) for u, p in enumerate(self.parent)]

    def path(self, c: int) -> list[int]:
        out = [c]
        while self.parent[out[-1]] >= 0:
            out.append(self.parent[out[-1]])
        return out


def _cross_pairs(
    tree: Hierarchy, truth: _Truth, table: torch.Tensor | None
) -> tuple[list[tuple[float, float]], list[int | None]]:
    """Per merge: (number of joined pairs, sum of their truth rho), and the truth node that is most pairs' LCA.

    Each live group keeps X[u] = its weight under truth node u. For two sides a, b the pairs with truth LCA
    at or below u number X_a[u] X_b[u]; the sum of rho over all joined pairs is sum_u X_a[u] X_b[u] weight(u),
    and the pairs with LCA exactly u are X_a[u] X_b[u] minus the same product at u's children.
    """
    K = tree.num_leaves
    paths: dict[int, list[int]] = {}
    live: dict[int, dict[int, float]] = {}
    for k in range(K):
        row = {k: 1.0} if table is None else {c: v for c, v in enumerate(table[k].tolist()) if v > 0}
        x: dict[int, float] = {}
        for c, v in row.items():
            for u in paths.setdefault(c, truth.path(c)):
                x[u] = x.get(u, 0.0) + v
        live[k] = x
    out, lca = [], []
    for i, (a, b) in enumerate(tree.children):
        xa, xb = live.pop(a), live.pop(b)
        small, large = (xa, xb) if len(xa) <= len(xb) else (xb, xa)
        rho_sum, exact = 0.0, {}
        for u, v in small.items():
            both = v * large.get(u, 0.0)
            if both:
                rho_sum += both * truth.weight[u]
                exact[u] = exact.get(u, 0.0) + both
                p = truth.parent[u]
                if p >= 0:
                    exact[p] = exact.get(p, 0.0) - both
        out.append((xa.get(truth.root, 0.0) * xb.get(truth.root, 0.0), rho_sum))
        # most pairs' LCA; on equal counts the higher node (the milder claim about the truth is not made)
        best = max(exact.items(), key=lambda t: (t[1], truth.rho[t[0]], t[0]), default=None)
        lca.append(best[0] if best is not None and best[1] > 0 else None)
        for u, v in small.items():
            large[u] = large.get(u, 0.0) + v
        live[K + i] = large
    return out, lca


def _group_labels(
    H: Hierarchy, truth: _Truth, group_names: Sequence[str] | Mapping[int, str] | None
) -> list[str | None] | None:
    """Each class's group name for the labels, or None without group names."""
    if group_names is None:
        return None
    C = H.num_leaves
    if isinstance(group_names, Mapping):
        out: list[str | None] = []
        for c in range(C):
            name = None
            for u in truth.path(c)[1:]:  # the lowest named group above the class
                if u in group_names:
                    name = str(group_names[u])
                    break
            out.append(name)
        return out
    coarse = H.coarse_groups()
    if coarse is None:
        raise ValueError(
            "group_names as a sequence needs a target_hierarchy built from levels (from_levels); "
            "pass a mapping {truth node id: name} instead"
        )
    if len(group_names) < max(coarse) + 1:
        raise ValueError(f"group_names has {len(group_names)} entries for {max(coarse) + 1} coarse groups")
    return [str(group_names[g]) for g in coarse]


def _side_label(classes: list[int], names: Sequence[str] | None, groups: list[str | None] | None) -> str:
    if not classes:
        return "(no points)"
    seen: dict[int, None] = dict.fromkeys(classes)  # majority classes, once each, in leaf order
    shown = [str(names[c]) if names is not None else str(c) for c in list(seen)[:3]]
    text = ", ".join(shown) + (f" +{len(seen) - 3}" if len(seen) > 3 else "")
    if groups is not None:
        tally: dict[str, int] = {}
        for c in classes:
            if groups[c] is not None:
                tally[groups[c]] = tally.get(groups[c], 0) + 1
        if tally:
            text += " (" + "/".join(sorted(tally, key=lambda g: -tally[g])) + ")"
    return text


def _moved_points(
    logits: torch.Tensor, assign: torch.Tensor, selected: list[int], partner: list[int], n: int
) -> list[int]:
    """Points of the selected side whose masked-softmax argmax (docs/algorithm.md) lies in the partner side."""
    K, device = logits.shape[1], logits.device
    sel = torch.zeros(K, dtype=torch.bool, device=device)
    sel[selected] = True
    inside = torch.zeros(K, dtype=torch.bool, device=device)
    inside[partner] = True
    rows = sel[assign].nonzero().squeeze(1)
    keep_idx, keep_q = [], []
    step = max(1, _ROWS // K)
    for s in range(0, rows.numel(), step):
        idx = rows[s : s + step]
        x = logits[idx].float() if logits.dtype in (torch.float16, torch.bfloat16) else logits[idx]
        x = x.masked_fill(sel, -math.inf)
        top, r = x.max(1)
        q = (top - torch.logsumexp(x, 1)).exp()
        hit = inside[r]
        keep_idx.append(idx[hit])
        keep_q.append(q[hit])
    if not keep_idx:
        return []
    idx, q = torch.cat(keep_idx), torch.cat(keep_q)
    order = torch.argsort(-q, stable=True)[:n]  # most probable first; ties by point index
    return idx[order].tolist()
