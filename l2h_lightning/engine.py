"""L2H ("From Logits to Hierarchies", ICML 2025): a binary tree over K clusters from (N, K) logits alone.

Exactly SPEC §1. Start with one group per cluster, then K-1 times:

1. **select** the group with the lowest score among the groups that hold points (ties: earliest group);
2. **reassign** its points with a softmax over the clusters outside it (a masked softmax);
3. **partner**: the group whose clusters receive the most of that probability, per cluster (ties: earliest);
4. **merge** the two into a new group at the end of the list.

Groups live in creation order, so "earliest" is "lowest node id" (scipy numbering: merge i makes node K+i).

Why it is fast (pure torch, on the logits' device):

- Confidences never change, so group scores are sums of per-cluster numbers: they are kept on the host and a
  heap picks the lowest score. Only per-cluster totals cross to the host, once.
- ``E = exp(logits - row max)`` is computed once. A reassignment is then a masked max and a masked sum over the
  selected group's rows of E, processed in cache-sized chunks through one reused buffer. A point is touched
  only when its own group is selected (about 4 times per point at K=1,000), and its previous masked argmax is
  reused while it stays outside the group.
- The partner needs only the group each point lands in (``node_of[r]``) and its probability: one scatter-add.
- One host sync per step: the partner's id.
- Rows whose logits span more than E can hold without underflow are reassigned in the log domain instead.
"""

from __future__ import annotations

import heapq
import math

import torch

from .hierarchy import Hierarchy

AGGREGATIONS = ("cluster_mean", "sum", "group_mean", "all_pairs")


def l2h(logits: torch.Tensor, aggregation: str = "cluster_mean") -> Hierarchy:
    """Build the L2H hierarchy over the K columns of `logits` (N, K).

    Args:
        logits: (N, K) floating-point tensor (or array); float16/bfloat16 are upcast to float32. It stays on
            its device (CPU or CUDA); only per-cluster totals and one index per step come to the host.
        aggregation: the group score used to select whom to merge next: ``"cluster_mean"`` (the paper's
            default: sum over the group's clusters of their mean confidence), ``"sum"`` (sum of the group's
            confidences), ``"group_mean"`` (mean confidence of the group's points), or ``"all_pairs"`` (merge
            the pair with the highest partner score over all pairs; slower, no gain in the paper).

    Returns:
        A binary `Hierarchy`; ``merges[i]`` = (selected group's node, partner's node) of step i, heights 1..K-1.

    A cluster that is never anyone's argmax is never selected, but can be a partner (SPEC §1).
    Cost: one pass over the logits, then about one masked max + sum over each point's row per time its
    group is selected; memory: one extra (N, K) float matrix.

    Example:
        >>> import torch
        >>> from l2h_lightning import l2h
        >>> logits = torch.tensor([[4.0, 3.0, 0.0], [3.0, 4.0, 0.0], [0.0, 1.0, 4.0]])
        >>> l2h(logits).merges.tolist()
        [[0, 1], [2, 3]]
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    reassign = _Reassign(_checked(logits))
    if reassign.num_clusters == 1:
        return Hierarchy(1, [])
    run = _all_pairs if aggregation == "all_pairs" else _select_and_partner
    return Hierarchy.from_merges(run(reassign, aggregation), reassign.num_clusters)


def _checked(logits: torch.Tensor) -> torch.Tensor:
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N points, K clusters), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.shape[0] == 0:
        raise ValueError("logits has no rows (N = 0): there are no points to build a hierarchy from")
    if logits.shape[1] == 0:
        raise ValueError("logits has no columns (K = 0): there are no clusters")
    return logits.detach()


class _Reassign:
    """Masked-softmax reassignment (SPEC §1 step 2) of any set of points, from ``E = exp(logits - row max)``."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.num_clusters = K = logits.shape[1]
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32  # half precision is upcast
        top, self.assign = logits.max(1)
        top, bottom = top.to(dtype), logits.amin(1).to(dtype)
        bad = int((~(top.isfinite() & bottom.isfinite())).sum())
        if bad:
            raise ValueError(f"logits has NaN or infinite entries in {bad} of its {logits.shape[0]} rows")
        self.E = torch.sub(logits, top[:, None]).exp_()
        self.conf = self.E.sum(1).reciprocal_()  # g(x), the softmax maximum
        info = torch.finfo(dtype)
        self.floor = info.tiny / info.eps**2  # below this, E has lost (or may lose) precision
        self.risky = (top - bottom) > -math.log(self.floor)  # rows E cannot serve: use the log domain
        rows = (1 << 26 if logits.is_cuda else 1 << 20) // K  # a cache-sized chunk (CPU), at most 1/4 of E
        self.buf = torch.empty(max(1, min(rows, logits.shape[0] // 4)), K, dtype=dtype, device=logits.device)
        # Each point's last masked argmax (at first its own cluster, which is always masked). A point's group only
        # grows, so the columns it may move to only shrink: while that column stays outside the group it is still
        # the (first) maximum, and the costly indexed max is skipped.
        self.last = self.assign.clone()

    def points_by_cluster(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """For every cluster, (its points E can serve, its risky points), as index tensors."""
        K, key = self.num_clusters, self.assign * 2 + self.risky
        counts = torch.bincount(key, minlength=2 * K).tolist()
        parts = torch.argsort(key, stable=True).split(counts)
        return {c: (parts[2 * c], parts[2 * c + 1]) for c in range(K)}

    def __call__(
        self, points: tuple[torch.Tensor, torch.Tensor], columns: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked argmax r and its probability q (float64) for `points`, masking `columns` (None: own cluster)."""
        safe, risky = points
        r, q = self._from_E(safe, columns)
        if risky.numel():
            r2, q2 = self._from_logits(risky, columns)
            r, q = torch.cat((r, r2)), torch.cat((q, q2))
        return r, q.double()

    def _mask(self, x: torch.Tensor, points: torch.Tensor, columns: torch.Tensor | None, value: float) -> None:
        if columns is None:
            x.scatter_(1, self.assign[points, None], value)
        else:
            x.index_fill_(1, columns, value)

    def _from_E(self, points: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        n, step = points.numel(), self.buf.shape[0]
        r = torch.empty(n, dtype=torch.long, device=points.device)
        q = torch.empty(n, dtype=self.buf.dtype, device=points.device)
        keep = None
        if columns is not None and 8 * columns.numel() > self.num_clusters:  # many columns: one streaming pass
            keep = torch.ones(self.num_clusters, dtype=q.dtype, device=q.device).index_fill_(0, columns, 0.0)
        for s in range(0, n, step):
            p = points[s : s + step]
            x = torch.index_select(self.E, 0, p, out=self.buf[: p.numel()])
            if keep is None:
                self._mask(x, p, columns, 0.0)
            else:
                x.mul_(keep)
            self._argmax(x, p, q[s : s + step], r[s : s + step])
            q[s : s + step] /= x.sum(1)
        return r, q

    def _argmax(self, x: torch.Tensor, points: torch.Tensor, top: torch.Tensor, where: torch.Tensor) -> None:
        """Row maxima of the masked rows `x` into `top` and their first columns into `where`."""
        if x.is_cuda or x.numel() < 1 << 18:  # CUDA (picking rows would sync), or too small to pay for picking
            torch.max(x, 1, out=(top, where))
        else:
            where.copy_(self.last[points])
            torch.gather(x, 1, where[:, None], out=top[:, None])
            redo = (top == 0).nonzero().squeeze(1)  # masked now (or never computed): E > 0 everywhere else
            if 2 * redo.numel() > x.shape[0]:
                torch.max(x, 1, out=(top, where))
            elif redo.numel():
                top[redo], where[redo] = torch.max(x.index_select(0, redo), 1)
        self.last[points] = where

    def _from_logits(self, points: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logits[points].to(self.buf.dtype)
        self._mask(x, points, columns, -math.inf)
        top, r = x.max(1)
        return r, (top - torch.logsumexp(x, 1)).exp()


def _union(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The points of two merged groups, part by part (safe, risky)."""
    return tuple(torch.cat(parts) for parts in zip(a, b))


def _select_and_partner(reassign: _Reassign, aggregation: str) -> list[tuple[int, int]]:
    K, device = reassign.num_clusters, reassign.E.device
    assign = reassign.assign
    counts = torch.bincount(assign, minlength=K)
    conf_sums = torch.zeros(K, dtype=torch.float64, device=device).index_add_(0, assign, reassign.conf.double())
    counts, conf_sums = counts.tolist(), conf_sums.tolist()

    # Per group, additive under merging: (sum of confidences, number of points, sum of cluster means).
    stats = {c: (conf_sums[c], counts[c], conf_sums[c] / counts[c] if counts[c] else 0.0) for c in range(K)}

    def score(node: int) -> float:
        total, n, means = stats[node]
        return {"cluster_mean": means, "sum": total, "group_mean": total / max(n, 1)}[aggregation]

    heap = [(score(c), c) for c in range(K) if counts[c]]
    heapq.heapify(heap)
    members = dict(enumerate(torch.arange(K, device=device).split(1)))  # each live group's clusters
    points = reassign.points_by_cluster()
    node_of = torch.arange(K, device=device)  # cluster -> node of its live group
    # |H| per node; only live groups receive probability mass, so merged-away nodes need no update
    width = torch.ones(2 * K - 1, dtype=torch.float64, device=device)
    merges = []
    for new in range(K, 2 * K - 1):
        G = heapq.heappop(heap)[1]
        while G not in members:  # merged away as somebody's partner
            G = heapq.heappop(heap)[1]
        r, q = reassign(points[G], members[G])
        mass = torch.bincount(node_of[r], weights=q, minlength=2 * K - 1)
        H = int(torch.argmax(mass.div_(width)))  # first maximum = earliest group
        merges.append((G, H))

        members[new] = torch.cat((members.pop(G), members.pop(H)))
        node_of.index_fill_(0, members[new], new)
        width[new] = float(members[new].numel())
        points[new] = _union(points.pop(G), points.pop(H))
        stats[new] = tuple(x + y for x, y in zip(stats.pop(G), stats.pop(H)))
        heapq.heappush(heap, (score(new), new))
    return merges


def _all_pairs(reassign: _Reassign, _: str) -> list[tuple[int, int]]:
    """Merge the pair (G, H) with the highest A_G(H) over all pairs (SPEC §1 variants).

    Each live group sits in a slot (the merged group takes G's slot). ``mass[i, j]`` is the probability that
    slot i's points send to slot j's clusters; a group's reassignment does not change when *other* groups
    merge, so only the new group's row is computed afresh and the partner's column is added into G's.
    """
    K, device = reassign.num_clusters, reassign.E.device
    everyone = reassign.points_by_cluster()
    has_points = torch.bincount(reassign.assign, minlength=K) > 0
    slot_of = torch.arange(K, device=device)  # cluster -> slot of its live group
    node_at = list(range(K))  # slot -> node id
    width = torch.ones(K, dtype=torch.float64, device=device)
    mass = torch.zeros(K, K, dtype=torch.float64, device=device)
    safe, risky = (torch.cat([p[i] for p in everyone.values()]) for i in (0, 1))
    r, q = reassign((safe, risky), None)  # every point, with only its own cluster masked
    mass.index_put_((reassign.assign[torch.cat((safe, risky))], r), q, accumulate=True)
    members = dict(enumerate(torch.arange(K, device=device).split(1)))
    points, merges = everyone, []
    for new in range(K, 2 * K - 1):
        value = torch.where(has_points[:, None], mass / width, -math.inf)
        i, j = min((node_at[i], node_at[j], i, j) for i, j in (value == value.max()).nonzero().tolist())[2:]
        G, H = node_at[i], node_at[j]
        merges.append((G, H))

        mass[:, i] += mass[:, j]
        mass[:, j] = 0.0
        width[i] += width[j]
        width[j] = math.inf
        has_points[j] = False
        node_at[i], node_at[j] = new, -1
        members[new] = torch.cat((members.pop(G), members.pop(H)))
        slot_of[members[new]] = i
        points[new] = _union(points.pop(G), points.pop(H))
        r, q = reassign(points[new], members[new])
        mass[i] = torch.zeros(K, dtype=torch.float64, device=device).index_add_(0, slot_of[r], q)
        mass[j] = 0.0
    return merges
