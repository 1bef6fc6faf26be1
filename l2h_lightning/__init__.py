"""l2h_lightning: watch the class hierarchy your model learns (L2H, "From Logits to Hierarchies")."""

from typing import Any

from .engine import AGGREGATIONS, l2h
from .explain import clade_support, suggest_cuts, surprising_merges
from .hierarchy import Hierarchy
from .views import plot_dendrogram, plot_tree_card, save_dendrogram, save_html, to_html

__all__ = [
    "AGGREGATIONS", "Hierarchy", "L2HMonitor", "clade_support", "l2h", "plot_dendrogram", "plot_tree_card",
    "save_dendrogram", "save_html", "suggest_cuts", "surprising_merges", "to_html",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "L2HMonitor":  # imported on first use: the engine alone does not need Lightning
        from .callback import L2HMonitor

        return L2HMonitor
    raise AttributeError(f"module 'l2h_lightning' has no attribute {name!r}")
