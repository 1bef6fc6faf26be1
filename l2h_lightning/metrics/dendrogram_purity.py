from __future__ import annotations

from typing import Any

import torch

from ._base import _TreeMetric
from ._plot import plot_values
from .functional.dendrogram_purity import _dendrogram_purity_compute


class DendrogramPurity(_TreeMetric):
    """Dendrogram purity (higher is better) of the L2H tree learned from the data, or of a fixed tree.

    Example (tree from the data):
        >>> import torch
        >>> metric = DendrogramPurity()
        >>> metric.update(torch.tensor([[3.0, 2, 0], [2, 3, 0], [0, 0, 3]]), torch.tensor([0, 0, 1]))
        >>> float(metric.compute())
        1.0

    Example (fixed tree, only counts are kept):
        >>> from l2h_lightning import Hierarchy
        >>> metric = DendrogramPurity(hierarchy=Hierarchy.from_merges([[0, 1], [2, 3]], num_leaves=3))
        >>> metric.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 0, 1, 1]))
        >>> float(metric.compute())
        1.0
    """

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        tree, counts = self._tree_and_counts()
        return _dendrogram_purity_compute(tree, counts.double())

    def plot(self, val: Any = None, ax: Any = None) -> tuple[Any, Any]:
        return plot_values(self.compute() if val is None else val, "dendrogram purity", ax, self.higher_is_better)
