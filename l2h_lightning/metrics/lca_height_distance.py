from __future__ import annotations

from typing import Any

import torch

from ._base import _TreeMetric
from ._plot import plot_values
from .functional.lca_height_distance import _lca_height_distance_compute, flat_hierarchy


class LCAHeightDistance(_TreeMetric):
    """LCA height distance (lower is better) to `target_hierarchy` (flat truth when None); see the functional form.

    Example:
        >>> import torch
        >>> from l2h_lightning import Hierarchy
        >>> metric = LCAHeightDistance(target_hierarchy=Hierarchy.from_levels([[0, 0, 1]]))
        >>> metric.update(torch.tensor([[3.0, 2, 0], [2, 3, 0], [0, 0, 3]]), torch.tensor([0, 1, 2]))
        >>> float(metric.compute())
        0.0
    """

    higher_is_better = False

    def compute(self) -> torch.Tensor:
        tree, counts = self._tree_and_counts()
        truth = self.target_hierarchy or flat_hierarchy(counts.shape[1])
        return _lca_height_distance_compute(tree, counts.double(), truth)

    def plot(self, val: Any = None, ax: Any = None) -> tuple[Any, Any]:
        return plot_values(self.compute() if val is None else val, "LCA height distance", ax, self.higher_is_better)
