"""Insight from a learned tree: merges that contradict the taxonomy, clade support, and where to cut.

This layer sits above `metrics` and below the views: it returns plain records and tensors, never pictures.
"""

from .levels import cut_scores, suggest_cuts
from .support import bootstrap_weights, clade_support
from .surprises import surprising_merges

__all__ = ["bootstrap_weights", "clade_support", "cut_scores", "suggest_cuts", "surprising_merges"]
