import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from l2h_lightning import Hierarchy, l2h, plot_dendrogram, save_dendrogram
from l2h_lightning.plotting import figure_to_array


@pytest.mark.parametrize("k", [10, 150, 1000])
def test_readable_at_every_size_without_warnings(k):
    tree = l2h(torch.randn(3 * k, k, generator=torch.Generator().manual_seed(k)))
    names = [f"class {i}" for i in range(k)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig, ax = plot_dendrogram(tree, names, groups=[i % 7 for i in range(k)])
        image = figure_to_array(fig)  # renders: layout warnings would show up here
    labels = [t.get_text() for t in (ax.get_xticklabels() if k <= 40 else ax.get_yticklabels())]
    assert len(labels) == min(k, 150)
    if k > 150:  # collapsed subtrees name a representative class and how many more they hold
        assert all("class" in label for label in labels) and any("+" in label for label in labels)
        assert sum(int(label.split("+")[1]) + 1 if "+" in label else 1 for label in labels) == k
    assert image.ndim == 3 and image.shape[2] == 3
    assert plt.get_fignums() == []


def test_draws_into_given_axes_and_closes_nothing():
    fig = plt.figure()
    ax = fig.add_subplot()
    out_fig, out_ax = plot_dendrogram(l2h(torch.randn(50, 5)), ax=ax)
    assert out_ax is ax and out_fig is fig and plt.fignum_exists(fig.number)
    plt.close(fig)


def test_save_full_size(tmp_path):
    tree = l2h(torch.randn(900, 300))
    path = save_dendrogram(tree, tmp_path / "tree.png", [f"c{i}" for i in range(300)])
    import matplotlib.image

    height = matplotlib.image.imread(path).shape[0]
    assert height > 300 * 0.14 * 100 * 0.9  # one row per leaf: nothing truncated


def test_errors_and_tiny_trees():
    with pytest.raises(ValueError, match="binary"):
        plot_dendrogram(Hierarchy.from_levels([[0, 0, 0]]))
    with pytest.raises(ValueError, match="names has 2 entries for 3 leaves"):
        plot_dendrogram(l2h(torch.randn(9, 3)), names=["a", "b"])
    fig, ax = plot_dendrogram(Hierarchy(1, []), names=["only"])
    assert ax.texts[0].get_text() == "only"
    assert np.isfinite(plot_dendrogram(l2h(torch.randn(9, 2)))[1].get_ylim()).all()
