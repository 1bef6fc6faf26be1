"""All the scores of one tree at once (what `HierarchyMetrics`, `L2HMonitor` and the CLI report)."""

from __future__ import annotations

import torch

from ...hierarchy import Hierarchy
from .contingency import _counts
from .dendrogram_purity import _dendrogram_purity_compute
from .lca_height_distance import _lca_height_distance_compute, flat_hierarchy
from .leaf_purity import _leaf_purity_compute
from .level_scores import _level_scores_compute


def _hierarchy_scores_compute(
    hierarchy: Hierarchy, counts: torch.Tensor, target_hierarchy: Hierarchy | None = None
) -> dict[str, torch.Tensor]:
    counts = counts.double()
    truth = target_hierarchy or flat_hierarchy(counts.shape[1])
    out = {
        "dp": _dendrogram_purity_compute(hierarchy, counts),
        "lhd": _lca_height_distance_compute(hierarchy, counts, truth),
        "leaf_purity": _leaf_purity_compute(counts),
        "empty_clusters": (counts.sum(1) == 0).sum(),
    }
    if truth.levels is not None:
        out.update(_level_scores_compute(hierarchy, counts, truth))
    return out


def hierarchy_scores(
    hierarchy: Hierarchy,
    preds: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    target_hierarchy: Hierarchy | None = None,
    *,
    counts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """``{"dp", "lhd", "leaf_purity", "empty_clusters"}`` plus the level scores when `target_hierarchy` has levels.

    Example:
        >>> import torch
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 1], [2, 3]], num_leaves=3)
        >>> scores = hierarchy_scores(tree, torch.tensor([0, 1, 2, 2]), torch.tensor([0, 0, 1, 1]))
        >>> {k: float(v) for k, v in scores.items()}
        {'dp': 1.0, 'lhd': 0.08333333333333333, 'leaf_purity': 1.0, 'empty_clusters': 0.0}
    """
    counts = _counts(hierarchy, preds, target, counts, target_hierarchy)
    return _hierarchy_scores_compute(hierarchy, counts, target_hierarchy)
