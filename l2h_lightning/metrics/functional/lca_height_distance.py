"""LCA height distance (SPEC §3; this project's definition, the paper's formula is not public).

The mean over all unordered point pairs of |rho_T(pred_i, pred_j) - rho_H(y_i, y_j)|, where rho is a tree's
normalised LCA size. Computed without point pairs: for every node v of T and u of H, count the pairs whose LCA is
v in T and u in H, then weight them by |rho_T(v) - rho_H(u)|.
"""

from __future__ import annotations

import warnings

import torch

from ...hierarchy import Hierarchy
from .contingency import _children_sum, _counts, _heights, _node_counts


def flat_hierarchy(num_classes: int) -> Hierarchy:
    """The tree of 'no structure': all classes under one root (rho = 1 between any two classes)."""
    return Hierarchy(num_classes, [tuple(range(num_classes))] if num_classes > 1 else [])


def _lca_height_distance_compute(hierarchy: Hierarchy, counts: torch.Tensor, target_hierarchy: Hierarchy) -> torch.Tensor:
    n = _node_counts(hierarchy, counts)  # (nodes of T, C)
    S = _node_counts(target_hierarchy, n.T).T  # (nodes of T, nodes of H): points under both
    Q = S**2 - _children_sum(target_hierarchy, (S**2).T).T  # ordered pairs under v whose H-LCA is u
    pairs = (Q - _children_sum(hierarchy, Q)) / 2  # unordered pairs with T-LCA v and H-LCA u
    rho_T, rho_H = _heights(hierarchy, counts.device), _heights(target_hierarchy, counts.device)
    N = counts.sum()
    if N < 2:
        warnings.warn("LCA height distance is undefined for fewer than two points: returning NaN", stacklevel=3)
        return torch.tensor(float("nan"), dtype=torch.float64, device=counts.device)
    return ((rho_T[:, None] - rho_H[None, :]).abs() * pairs).sum() / (N * (N - 1) / 2)


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
