"""Old import path: the pictures live in `l2h_lightning.views`."""

from .views.dendrogram import MAX_LEAVES, figure_to_array, plot_dendrogram, save_dendrogram  # noqa: F401
