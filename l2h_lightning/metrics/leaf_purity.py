from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from ..hierarchy import _as_int
from ._plot import plot_values
from .functional.contingency import contingency_table
from .functional.leaf_purity import _leaf_purity_compute


class LeafPurity(Metric):
    """Leaf purity (higher is better): the fraction of points in their cluster's majority class.

    Needs no tree, so it only keeps the (num_clusters, num_classes) counts.

    Example:
        >>> import torch
        >>> metric = LeafPurity(num_clusters=2, num_classes=2)
        >>> metric.update(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1]))
        >>> float(metric.compute())
        0.75
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, num_clusters: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        num_clusters, num_classes = _as_int(num_clusters, "num_clusters"), _as_int(num_classes, "num_classes")
        if num_clusters < 1 or num_classes < 1:
            raise ValueError(f"num_clusters and num_classes must be positive, got {num_clusters} and {num_classes}")
        self.add_state("counts", torch.zeros(num_clusters, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add cluster ids (N,) or logits (N, K), and class ids (N,)."""
        self.counts += contingency_table(preds, target, *self.counts.shape).to(self.counts)

    def compute(self) -> torch.Tensor:
        if not self.counts.sum() > 0:
            raise ValueError("no points to score: call update(preds, target) with at least one point before compute()")
        return _leaf_purity_compute(self.counts)

    def plot(self, val: Any = None, ax: Any = None) -> tuple[Any, Any]:
        return plot_values(self.compute() if val is None else val, "leaf purity", ax, self.higher_is_better)
