import importlib.util
import json
import subprocess
import sys
import warnings

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.patches import PathPatch

from l2h_lightning import Hierarchy, l2h, plot_dendrogram, save_dendrogram
from l2h_lightning.views import figure_to_array, plot_tree_card
from l2h_lightning.views.dendrogram import CARD_FONT_PT, MAX_HEIGHT_IN, _class_list, _layout


def texts(ax, gid):
    return [t for t in ax.texts if t.get_gid() == gid]


def chain(K):
    """The deepest tree: leaf i+2 joins everything merged so far (depth K-1)."""
    return Hierarchy.from_merges([[0, 1]] + [[K + i, i + 2] for i in range(K - 2)], K)


def random_tree(K, seed=0):
    """A random binary tree: each merge joins two random current groups (cheaper than L2H at K=1,000)."""
    rng = np.random.default_rng(seed)
    tops, merges = list(range(K)), []
    for i in range(K - 1):
        a, b = sorted(rng.choice(len(tops), 2, replace=False).tolist(), reverse=True)
        merges.append([tops[a], tops[b]])
        del tops[a], tops[b]
        tops.append(K + i)
    return Hierarchy.from_merges(merges, K)


@pytest.mark.parametrize("k", [10, 150, 1000])
def test_readable_at_every_size_without_warnings(k):
    tree = l2h(torch.randn(3 * k, k, generator=torch.Generator().manual_seed(k))) if k < 1000 else random_tree(k)
    names = [f"class {i}" for i in range(k)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig, ax = plot_dendrogram(tree, names, groups=[i % 7 for i in range(k)])
        image = figure_to_array(fig)  # renders: layout warnings would show up here
    labels = [t.get_text() for t in texts(ax, "leaf-label")]
    assert len(labels) == min(k, 150)
    if k > 150:  # collapsed subtrees name a representative class and how many more they hold
        assert all("class" in label for label in labels) and any("+" in label for label in labels)
        assert sum(int(label.split("+")[1]) + 1 if "+" in label else 1 for label in labels) == k
    assert all(t.get_rotation() == (90 if k <= 40 else 0) for t in texts(ax, "leaf-label"))
    assert image.ndim == 3 and image.shape[2] == 3
    assert plt.get_fignums() == []


def test_layout_matches_scipy_on_small_trees():
    from scipy.cluster.hierarchy import dendrogram

    tree = random_tree(60, seed=3)
    for shown in (60, 17):
        ref = dendrogram(tree.to_linkage(), no_plot=True, truncate_mode="lastp" if shown < 60 else None, p=shown)
        lay = _layout(tree, shown)
        assert lay.shown == ref["leaves"]
        ours = sorted(
            (lay.pos[a], lay.pos[b], lay.height[v])
            for v in range(lay.first, tree.num_nodes)
            for a, b in [tree.children[v - 60]]
        )
        theirs = sorted(((xs[0] - 5) / 10, (xs[3] - 5) / 10, ys[1]) for xs, ys in zip(ref["icoord"], ref["dcoord"]))
        np.testing.assert_allclose(ours, theirs)


def test_chain_of_ten_thousand_png_and_svg(tmp_path):
    K = 10_000
    tree = chain(K)
    names = [f"class {i}" for i in range(K)]
    png = save_dendrogram(tree, tmp_path / "chain.png", names, [i % 5 for i in range(K)])
    height, width = matplotlib.image.imread(png).shape[:2]
    assert height == MAX_HEIGHT_IN * 100 and width == 1000  # bounded: no 140,000-px image
    svg = save_dendrogram(tree, tmp_path / "chain.svg", names).read_text()
    assert svg.count("<text") >= K and ">class 0<" in svg and ">class 9999<" in svg  # every name, as text
    assert len(svg) < 8e6
    fig, ax = plot_dendrogram(tree, names, support=torch.rand(K - 1), highlight=[K, 2 * K - 2])  # the top 150
    labels = [t.get_text() for t in texts(ax, "leaf-label")]
    assert len(labels) == 150 and labels[0] == "class 0 +9850" and labels[-1] == "class 9999"
    figure_to_array(fig)


def test_png_leaves_out_names_too_small_to_read_and_says_so(tmp_path):
    fig, ax = plot_dendrogram(chain(4000), max_leaves=None)
    assert len(texts(ax, "leaf-label")) == 4000  # a Figure for the caller keeps every name
    import l2h_lightning.views.dendrogram as module

    fig, ax = module._plot_tree(chain(4000), None, None, None, None, None, None, None, None, 100)
    assert texts(ax, "leaf-label") == [] and "names too small" in ax.get_title()
    fig, ax = module._plot_tree(chain(1000), None, None, None, None, None, None, None, None, 100)
    assert len(texts(ax, "leaf-label")) == 1000


def test_draws_into_given_axes_and_closes_nothing():
    fig = plt.figure()
    ax = fig.add_subplot()
    out_fig, out_ax = plot_dendrogram(random_tree(5), ax=ax)
    assert out_ax is ax and out_fig is fig and plt.fignum_exists(fig.number)
    plt.close(fig)


def test_never_imports_pyplot():
    code = (
        "import sys, torch\n"
        "from l2h_lightning import l2h\n"
        "from l2h_lightning.views import plot_dendrogram, plot_tree_card, figure_to_array\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
        "t = l2h(torch.randn(300, 50))\n"
        "figure_to_array(plot_dendrogram(t)[0]); figure_to_array(plot_tree_card(t)[0])\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_save_full_size(tmp_path):
    tree = random_tree(300)
    path = save_dendrogram(tree, tmp_path / "tree.png", [f"c{i}" for i in range(300)])
    height = matplotlib.image.imread(path).shape[0]
    assert height > 300 * 0.14 * 100 * 0.9  # one row per leaf: nothing truncated


def test_group_names_in_legend_and_mixed_groups_marked():
    K = 200
    groups = [i // 50 for i in range(K)]
    kinds = ["animals", "vehicles", "plants", "tools"]
    _, ax = plot_dendrogram(random_tree(K), groups=groups, group_names=kinds)  # 150 of 200 drawn: some mixed
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:4] == kinds and "mixed groups" in legend and not any("group 0" in t for t in legend)
    _, ax = plot_dendrogram(random_tree(K), groups=groups, group_names={0: "a", 1: "b", 2: "c", 3: "d"})
    assert [t.get_text() for t in ax.get_legend().get_texts()][:4] == ["a", "b", "c", "d"]


def test_support_shades_clades_and_labels_the_largest():
    K = 1000
    tree = random_tree(K)
    support = torch.rand(K - 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fig, ax = plot_dendrogram(tree, support=support)
    shades = {p.get_gid(): p for p in ax.patches if isinstance(p, PathPatch)}
    assert "lines-support-0.0" in shades and "lines-support-1.0" in shades  # the drawn top merges span 0..1
    assert to_rgb(shades["lines-support-0.0"].get_edgecolor()) > to_rgb(shades["lines-support-1.0"].get_edgecolor())
    assert shades["lines-support-0.0"].get_linewidth() < shades["lines-support-1.0"].get_linewidth()
    labels = texts(ax, "support-label")
    assert 0 < len(labels) <= 60  # readable: only the largest drawn clades get a number
    sizes = tree.sizes()
    lay = _layout(tree, 150)
    biggest = max(range(lay.first, tree.num_nodes - 1), key=lambda v: (sizes[v], -v))
    spot = (lay.height[biggest], lay.pos[biggest])
    [label] = [t for t in labels if np.allclose(t.xy, spot)]
    assert label.get_text() == f"{100 * float(support[biggest - K]):.0f}"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "support 100%" in legend and "support 0%" in legend
    figure_to_array(fig)


def test_highlight_marks_drawn_and_collapsed_merges():
    K = 300
    tree = random_tree(K)
    lay = _layout(tree, 150)
    top, hidden = tree.num_nodes - 3, K + 5  # a drawn merge, and one inside a collapsed subtree
    assert lay.owner[top] == top and lay.owner[hidden] < lay.first
    _, ax = plot_dendrogram(tree, highlight=[top, {"node": hidden, "surprise": 0.4}])
    rings = [line for line in ax.lines if line.get_gid() == "highlight"]
    assert [tuple(r.get_xydata()[0]) for r in rings][0] == (lay.height[top], lay.pos[top])
    assert rings[1].get_xydata()[0][1] == lay.pos[lay.owner[hidden]]  # on the collapsed subtree's row
    assert [t.get_text() for t in texts(ax, "highlight-label")] == ["1", "2"]
    assert "surprising merge (rank)" in [t.get_text() for t in ax.get_legend().get_texts()]
    hidden_too = next(v for v in range(K, lay.first) if v != hidden and lay.owner[v] == lay.owner[hidden])
    _, ax = plot_dendrogram(tree, highlight=[hidden, top, hidden_too])  # two on one collapsed stem: one ring
    assert len([line for line in ax.lines if line.get_gid() == "highlight"]) == 2
    assert [t.get_text() for t in texts(ax, "highlight-label")] == ["1,3", "2"]


def test_card_has_room_for_rank_numbers_below_the_bottom_row():
    K = 1000
    tree = random_tree(K)
    lay = _layout(tree, 12)
    bottom = next(v for v in range(K, tree.num_nodes) if lay.owner[v] == lay.shown[-1])  # marked on the last row
    fig, ax = plot_tree_card(tree, [f"c{i}" for i in range(K)], highlight=[bottom], title="a title on one line")
    assert fig.get_size_inches()[1] * fig.dpi <= 230  # still TensorBoard's image area
    image = figure_to_array(fig)
    _assert_inside(fig, image)


def test_card_is_small_with_large_text_and_few_rows():
    K = 1000
    names = [f"species_{i}" for i in range(K)]
    groups = [i % 9 for i in range(K)]
    title = "L2H tree · epoch 3 · step 756 · DP 0.712 · LHD 0.104"
    fig, ax = plot_tree_card(random_tree(K), names, groups, group_names=[f"kind {g}" for g in range(9)], title=title)
    width, height = fig.get_size_inches() * fig.dpi
    assert width <= 400 and height <= 230  # TensorBoard's Time Series image area: shown 1:1, not shrunk
    rows = texts(ax, "group-label")
    assert len(rows) == 12
    def classes(text):  # "a, b +n": the names shown, then n more
        shown, _, more = text.partition(" +")
        return shown.count(",") + 1 + int(more or 0)

    assert sum(classes(t.get_text()) for t in rows) == K
    assert min(t.get_fontsize() for t in fig.findobj(a_text)) >= CARD_FONT_PT >= 9  # every text on the card
    assert all(t.get_text().startswith("kind ") for t in texts(ax, "group-name"))
    [heading] = [t for t in fig.texts if t.get_gid() == "title"]
    assert heading.get_text() == title
    image = figure_to_array(fig)
    assert image.shape[:2] == (round(height), round(width))
    _assert_inside(fig, image)


def a_text(artist):
    from matplotlib.text import Text

    return isinstance(artist, Text) and artist.get_visible() and artist.get_text() != ""


def _assert_inside(fig, image):
    """Every text of the card lies inside the image: nothing cut off at the edges."""
    renderer = fig.canvas.get_renderer()
    h, w = image.shape[:2]
    for t in fig.findobj(a_text):
        box = t.get_window_extent(renderer)
        assert box.x0 >= -0.5 and box.x1 <= w + 0.5 and box.y0 >= -0.5 and box.y1 <= h + 0.5, t.get_text()


def test_card_wraps_long_titles_and_handles_small_trees():
    fig, ax = plot_tree_card(random_tree(5), title="L2H tree · " + " · ".join(f"metric {i} 0.123" for i in range(6)))
    [heading] = [t for t in fig.texts if t.get_gid() == "title"]
    assert heading.get_text().count("\n") >= 1 and all(len(line) <= 60 for line in heading.get_text().split("\n"))
    assert [t.get_text() for t in texts(ax, "group-label")] == [str(v) for v in _layout(random_tree(5), 5).shown]
    _assert_inside(fig, figure_to_array(fig))
    _, ax = plot_tree_card(Hierarchy(1, []), names=["only"])
    assert texts(ax, "group-label")[0].get_text() == "only"
    fig, ax = plot_tree_card(chain(10_000), max_groups=30, support=torch.ones(9999), highlight=[10_001])
    assert len(texts(ax, "group-label")) == 30
    figure_to_array(fig)


def test_class_list_fits_the_budget():
    assert _class_list(["cat", "dog", "fox"], 40) == "cat, dog, fox"
    assert _class_list(["cat", "dog", "fox", "owl", "emu"], 14) == "cat, dog +3"
    assert _class_list(["a_very_long_class_name", "b"], 10) == "a_very\u2026 +1"
    for budget in range(6, 30):
        assert len(_class_list([f"name{i}" for i in range(40)], budget)) <= budget


def test_errors_and_tiny_trees():
    tree = random_tree(3)
    with pytest.raises(ValueError, match="binary"):
        plot_dendrogram(Hierarchy.from_levels([[0, 0, 0]]))
    with pytest.raises(ValueError, match="names has 2 entries for 3 leaves"):
        plot_dendrogram(tree, names=["a", "b"])
    with pytest.raises(ValueError, match="group_names has no name for group 2"):
        plot_dendrogram(tree, groups=[0, 1, 2], group_names=["a", "b"])
    with pytest.raises(ValueError, match=r"support must have shape \(2,\)"):
        plot_dendrogram(tree, support=torch.ones(3))
    with pytest.raises(ValueError, match=r"support must hold values in \[0, 1\]"):
        plot_dendrogram(tree, support=torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="highlight: 1 is not an internal node"):
        plot_dendrogram(tree, highlight=[1])
    with pytest.raises(ValueError, match="max_leaves must be a positive integer"):
        plot_dendrogram(tree, max_leaves=0)
    with pytest.raises(ValueError, match="max_groups must be a positive integer"):
        plot_tree_card(tree, max_groups=2.5)
    with pytest.raises(ValueError, match="path must end in .png, .svg, .pdf or .html"):
        save_dendrogram(tree, "tree.jpg")
    fig, ax = plot_dendrogram(Hierarchy(1, []), names=["only"])
    assert ax.texts[0].get_text() == "only"
    assert np.isfinite(plot_dendrogram(random_tree(2))[1].get_ylim()).all()


def test_pdf_and_html(tmp_path):
    tree = random_tree(40)
    assert save_dendrogram(tree, tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")
    if importlib.util.find_spec("l2h_lightning.views.html") is None:
        pytest.skip("l2h_lightning.views.html (the explorable tree) is not in this checkout")
    names = [f"class {i}" for i in range(40)]
    page = save_dendrogram(tree, tmp_path / "t.html", names, [i % 3 for i in range(40)], group_names=["x", "y", "z"],
                           support=torch.rand(39), highlight=[70]).read_text()
    assert page.startswith("<!DOCTYPE html>")
    data = json.loads(page.split('id="l2h-data">', 1)[1].split("</script>", 1)[0])  # what the page carries
    flat = json.dumps(data)
    assert "class 39" in flat and '"z"' in flat
    assert [(m["node"], m["rank"]) for m in data["sur"]] == [(70, 1)]  # a plain id arrives as a ranked record
