"""Tree distance: how differently two trees over the same leaves group them (used for drift between epochs)."""

from __future__ import annotations

import torch

from ...hierarchy import Hierarchy
from .contingency import _check_tree


def tree_distance(a: Hierarchy, b: Hierarchy) -> torch.Tensor:
    """Mean over leaf pairs of |rho_a - rho_b| (SPEC §3): 0 for the same shape, at most 1.

    Example:
        >>> from l2h_lightning import Hierarchy
        >>> x = Hierarchy.from_merges([[0, 1], [2, 3]], num_leaves=3)
        >>> y = Hierarchy.from_merges([[1, 2], [0, 3]], num_leaves=3)
        >>> float(tree_distance(x, x)), round(float(tree_distance(x, y)), 4)
        (0.0, 0.3333)
    """
    _check_tree(a, "a")
    _check_tree(b, "b")
    if a.num_leaves != b.num_leaves:
        raise ValueError(f"the trees have different leaves: {a.num_leaves} and {b.num_leaves}")
    K = a.num_leaves
    if K < 2:
        return torch.zeros((), dtype=torch.float64)
    # rho is symmetric with a zero diagonal: the mean over pairs i < j is the full sum over K (K - 1).
    # Rows come in blocks, so two trees of 10,000 leaves need no 10,000 x 10,000 matrix.
    total = torch.zeros((), dtype=torch.float64)
    for (_, rows_a), (_, rows_b) in zip(a._rho_blocks(), b._rho_blocks()):
        total += rows_a.sub_(rows_b).abs_().sum()
    return total / (K * (K - 1))
