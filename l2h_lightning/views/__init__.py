"""Pictures of a tree: the dendrogram (full or truncated), the TensorBoard-sized card, image arrays for loggers."""

from .dendrogram import MAX_LEAVES, figure_to_array, plot_dendrogram, plot_tree_card, save_dendrogram

__all__ = ["MAX_LEAVES", "figure_to_array", "plot_dendrogram", "plot_tree_card", "save_dendrogram"]
