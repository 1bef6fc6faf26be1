"""Functional metrics for hierarchies (docs/metrics.md). Each takes (preds, target) or the (K, C) table `counts=`."""

from .contingency import contingency_table
from .dendrogram_purity import dendrogram_purity
from .hierarchy_scores import hierarchy_scores
from .lca_height_distance import flat_hierarchy, lca_height_distance
from .leaf_purity import leaf_purity
from .level_scores import level_scores
from .tree_distance import tree_distance

__all__ = [
    "contingency_table",
    "dendrogram_purity",
    "flat_hierarchy",
    "hierarchy_scores",
    "lca_height_distance",
    "leaf_purity",
    "level_scores",
    "tree_distance",
]
