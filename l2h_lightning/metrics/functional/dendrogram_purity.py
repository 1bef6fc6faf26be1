"""Dendrogram purity (docs/metrics.md): for same-class point pairs, the class purity of their smallest common subtree."""

from __future__ import annotations

import warnings

import torch

from ...hierarchy import Hierarchy
from .contingency import _class_blocks, _counts, _node_counts


def _dendrogram_purity_compute(hierarchy: Hierarchy, counts: torch.Tensor) -> torch.Tensor:
    per_class = counts.sum(0)
    total_pairs = (per_class * (per_class - 1) / 2).sum()
    if total_pairs == 0 or (per_class > 0).sum() < 2:
        warnings.warn(
            "dendrogram purity is undefined with fewer than two classes or without two points of the same class "
            "(any tree would score 1): returning NaN",
            stacklevel=3,
        )
        return torch.tensor(float("nan"), dtype=torch.float64, device=counts.device)
    K = hierarchy.num_leaves
    size = _node_counts(hierarchy, counts.sum(1, keepdim=True))[:, 0].clamp(min=1)  # points under each node
    parents = hierarchy.parents.to(counts.device)[:-1]  # every node but the root has a parent
    total = torch.zeros((), dtype=torch.float64, device=counts.device)
    for n in _class_blocks(hierarchy, counts):  # (classes, nodes): points of each class under each node
        square = n**2
        within_children = torch.zeros_like(square).index_add_(1, parents, square[:, :-1])
        within_children[:, :K] = n[:, :K]  # a leaf's "children" are its points
        pairs = (square - within_children) / 2  # same-class pairs whose smallest common subtree is this node
        total += (pairs * n / size).sum()
    return total / total_pairs


def dendrogram_purity(
    hierarchy: Hierarchy,
    preds: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    *,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dendrogram purity of `hierarchy` (over the K clusters) for the points' clusters and classes. Higher is better.

    Args:
        hierarchy: a tree over the K clusters (e.g. from `l2h`).
        preds: cluster ids (N,) or logits (N, K) (argmax taken).
        target: class ids (N,).
        counts: instead of preds and target, the (K, C) contingency table.

    Returns a 0-d float64 tensor; NaN (with a warning) when fewer than two classes have points (every tree would
    be perfectly pure) or no two points share a class.

    Example:
        >>> import torch
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 1], [2, 3]], num_leaves=3)
        >>> float(dendrogram_purity(tree, torch.tensor([0, 1, 2, 2]), torch.tensor([0, 0, 1, 1])))
        1.0
    """
    return _dendrogram_purity_compute(hierarchy, _counts(hierarchy, preds, target, counts))
