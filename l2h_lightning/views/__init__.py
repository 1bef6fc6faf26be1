"""Views of a tree: the dendrogram (full or truncated), the TensorBoard-sized card, the explorable HTML page."""

from .dendrogram import MAX_LEAVES, figure_to_array, plot_dendrogram, plot_tree_card, save_dendrogram
from .html import save_html, to_html

__all__ = ["MAX_LEAVES", "figure_to_array", "plot_dendrogram", "plot_tree_card", "save_dendrogram", "save_html", "to_html"]
