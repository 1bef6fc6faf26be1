from __future__ import annotations

from typing import Any

import torch

from ._base import _TreeMetric
from ._plot import plot_values
from .functional.hierarchy_scores import _hierarchy_scores_compute


class HierarchyMetrics(_TreeMetric):
    """Everything at once, running L2H once: ``{"dp", "lhd", "leaf_purity", "empty_clusters"}`` plus
    ``"level{i}/nmi"``, ``"level{i}/ari"``, ``"level{i}/acc"`` when `target_hierarchy` has levels.

    ``empty_clusters`` counts the clusters that are no point's argmax (never-predicted classes).

    Example:
        >>> import torch
        >>> from l2h_lightning import Hierarchy
        >>> metrics = HierarchyMetrics(target_hierarchy=Hierarchy.from_levels([[0, 0, 1, 1]]))
        >>> metrics.update(torch.eye(4).repeat(2, 1) * 3, torch.arange(4).repeat(2))
        >>> sorted(metrics.compute())
        ['dp', 'empty_clusters', 'leaf_purity', 'level1/acc', 'level1/ari', 'level1/nmi', 'lhd']
    """

    higher_is_better = None

    def compute(self) -> dict[str, torch.Tensor]:
        tree, counts = self._tree_and_counts()
        return _hierarchy_scores_compute(tree, counts, self.target_hierarchy)

    def plot(self, val: Any = None, ax: Any = None) -> tuple[Any, Any]:
        val = self.compute() if val is None else val
        strip = (lambda d: {k: v for k, v in d.items() if k != "empty_clusters"})
        val = [strip(v) for v in val] if isinstance(val, (list, tuple)) else strip(val)
        return plot_values(val, "hierarchy metrics", ax)
