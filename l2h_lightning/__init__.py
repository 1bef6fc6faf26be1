"""l2h_lightning: watch the class hierarchy your model learns (L2H, "From Logits to Hierarchies")."""

from typing import Any

from .engine import AGGREGATIONS, l2h
from .hierarchy import Hierarchy
from .plotting import plot_dendrogram, save_dendrogram

__all__ = ["AGGREGATIONS", "Hierarchy", "L2HMonitor", "l2h", "plot_dendrogram", "save_dendrogram"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "L2HMonitor":  # imported on first use: the engine alone does not need Lightning
        from .callback import L2HMonitor

        return L2HMonitor
    raise AttributeError(f"module 'l2h_lightning' has no attribute {name!r}")
