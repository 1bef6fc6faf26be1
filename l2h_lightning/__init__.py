"""l2h_lightning: watch the class hierarchy your model learns (L2H, "From Logits to Hierarchies")."""

from .engine import AGGREGATIONS, l2h
from .hierarchy import Hierarchy

__all__ = ["AGGREGATIONS", "Hierarchy", "l2h"]
__version__ = "0.1.0"
