"""torchmetrics-style hierarchy metrics (docs/metrics.md); functional forms in `l2h_lightning.metrics.functional`."""

from .dendrogram_purity import DendrogramPurity
from .hierarchy_metrics import HierarchyMetrics
from .lca_height_distance import LCAHeightDistance
from .leaf_purity import LeafPurity

__all__ = ["DendrogramPurity", "HierarchyMetrics", "LCAHeightDistance", "LeafPurity"]
