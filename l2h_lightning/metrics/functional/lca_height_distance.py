"""LCA height distance (docs/metrics.md; this project's definition, the paper's formula is not public).

The mean over all unordered point pairs of |rho_T(pred_i, pred_j) - rho_H(y_i, y_j)|, where rho is a tree's
normalised LCA size. Computed without point pairs: for every node v of T and u of H, count the pairs whose LCA is
v in T and u in H, then weight them by |rho_T(v) - rho_H(u)|.
"""

from __future__ import annotations

import warnings

import torch

from ...hierarchy import Hierarchy
from .contingency import _BLOCK, _class_blocks, _counts, _heights, _node_counts


def flat_hierarchy(num_classes: int) -> Hierarchy:
    """The tree of 'no structure': all classes under one root (rho = 1 between any two classes)."""
    return Hierarchy(num_classes, [tuple(range(num_classes))] if num_classes > 1 else [])


def _lca_height_distance_compute(hierarchy: Hierarchy, counts: torch.Tensor, target_hierarchy: Hierarchy) -> torch.Tensor:
    N = counts.sum()
    if N < 2:
        warnings.warn("LCA height distance is undefined for fewer than two points: returning NaN", stacklevel=3)
        return torch.tensor(float("nan"), dtype=torch.float64, device=counts.device)
    if len(target_hierarchy.children) <= 1:
        return _flat_lca_height_distance(hierarchy, counts)
    # S[v, u] = points under node v of T and node u of H. The unordered pairs whose LCAs are exactly (v, u)
    # number (S^2 - children's S^2 in T - in H + in both) / 2; summing them times w(v, u) = |rho_T(v) - rho_H(u)|
    # equals the sum of S^2 / 2 times w's second difference over (v, parent of v) x (u, parent of u), which needs
    # only row v of S: rows are taken in blocks, so memory stays O(block x nodes of H) for any tree size.
    device = counts.device
    rho_T, rho_H = _heights(hierarchy, device), _heights(target_hierarchy, device)
    par_T, par_H = hierarchy.parents.to(device), target_hierarchy.parents.to(device)
    up_T = torch.where(par_T >= 0, rho_T[par_T.clamp(min=0)], 0.0)
    has_T = (par_T >= 0).double()
    up_H = torch.where(par_H >= 0, rho_H[par_H.clamp(min=0)], 0.0)
    has_H = (par_H >= 0).double()
    order, start, end = (t.to(device) for t in hierarchy.spans())
    order_H, start_H, end_H = (t.to(device) for t in target_hierarchy.spans())
    # points of each class under each node of T, classes in H's leaf order: cumulative sums along both trees' orders
    cum = torch.zeros(hierarchy.num_leaves + 1, counts.shape[1], dtype=torch.float64, device=device)
    torch.cumsum(counts[order][:, order_H], 0, out=cum[1:])
    total = torch.zeros((), dtype=torch.float64, device=device)
    step = max(1, _BLOCK // max(counts.shape[1], target_hierarchy.num_nodes))
    cum_H = torch.zeros(min(step, hierarchy.num_nodes), counts.shape[1] + 1, dtype=torch.float64, device=device)
    for v0 in range(0, hierarchy.num_nodes, step):
        v = slice(v0, v0 + step)
        rows = cum_H[: len(range(*v.indices(hierarchy.num_nodes)))]
        torch.cumsum(cum[end[v]] - cum[start[v]], 1, out=rows[:, 1:])
        S2 = (rows[:, end_H] - rows[:, start_H]).square_()  # (block, nodes of H): squared points under both
        a, pa, ma = rho_T[v, None], up_T[v, None], has_T[v, None]
        d = (a - rho_H).abs_() - (pa - rho_H).abs_().mul_(ma)
        d -= ((a - up_H).abs_() - (pa - up_H).abs_().mul_(ma)).mul_(has_H)
        total += torch.dot(S2.view(-1), d.view(-1))
    return total / 2 / (N * (N - 1) / 2)


def _flat_lca_height_distance(hierarchy: Hierarchy, counts: torch.Tensor) -> torch.Tensor:
    """The same for a flat truth (rho_H = 1 between classes): sum_same rho_T + sum_diff (1 - rho_T), over pairs.

    Every sum over the pairs whose T-LCA is v, times rho_T(v), telescopes to a sum over nodes of
    (squared points under v) x (rho_T(v) - rho_T(parent of v)) / 2: one pass over the node counts, by class blocks.
    """
    device = counts.device
    rho = _heights(hierarchy, device)
    par = hierarchy.parents.to(device)
    drop = rho - torch.where(par >= 0, rho[par.clamp(min=0)], 0.0)
    per_class = counts.sum(0)
    N = per_class.sum()
    pairs = N * (N - 1) / 2
    different = pairs - (per_class * (per_class - 1) / 2).sum()
    rho_all = (_node_counts(hierarchy, counts.sum(1, keepdim=True))[:, 0].square() * drop).sum() / 2
    rho_same = torch.zeros((), dtype=torch.float64, device=device)
    for n in _class_blocks(hierarchy, counts):
        rho_same += torch.mv(n.square_(), drop).sum() / 2
    return (different - rho_all + 2 * rho_same) / pairs


def lca_height_distance(
    hierarchy: Hierarchy,
    preds: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    target_hierarchy: Hierarchy | None = None,
    *,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """LCA height distance between `hierarchy` (over K clusters) and the truth, in [0, 1]. Lower is better.

    Args:
        hierarchy: a tree over the K clusters.
        preds: cluster ids (N,) or logits (N, K); target: class ids (N,); or counts: the (K, C) table.
        target_hierarchy: the ground-truth tree over the C classes; None means flat truth (rho_H = 1 between
            different classes).

    Example:
        >>> import torch
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3)
        >>> truth = Hierarchy.from_levels([[0, 0, 1]])
        >>> float(lca_height_distance(tree, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), truth))
        0.0
    """
    counts = _counts(hierarchy, preds, target, counts, target_hierarchy)
    if target_hierarchy is None:
        target_hierarchy = flat_hierarchy(counts.shape[1])
    return _lca_height_distance_compute(hierarchy, counts, target_hierarchy)
