"""Dendrogram pictures that stay readable from K=10 to K=10,000 (matplotlib's object API; no pyplot state).

Heights are the merge step (1..K-1): the n-th merge of L2H is drawn at height n. The layout is computed here,
with loops over node ids (scipy's `dendrogram` recurses once per tree level and fails on chain-shaped trees).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hierarchy import Hierarchy

MAX_LEAVES = 150
# The card: TensorBoard's Time Series tab shows an image in a ~390 x 216 px area, scaled without smoothing (any
# shrinking drops whole pixel rows of text). The card is drawn at about that size, so it is shown 1:1.
CARD_GROUPS = 12
CARD_WIDTH_IN = 3.9
CARD_ROW_IN = 0.155
CARD_FONT_PT = 9.0
CARD_TITLE_PT = 9.5
MAX_HEIGHT_IN = 200.0  # full-tree figures stop growing here: 20,000 px at 100 dpi, and PDF's page limit
MIN_LABEL_PX = 6.0  # in a raster image, leaf names smaller than this are unreadable: they are left out
_INK = 0.25  # grey level of the tree's lines
_FAINT = 0.8  # grey level of a clade with support 0
_MARK = "#d62728"  # highlighted (surprising) merges


@dataclass
class _Layout:
    """Where each drawn node sits: `pos` along the leaf axis (0..n-1), `height` along the merge axis."""

    first: int  # internal nodes with ids >= first are drawn; the drawn leaves are below it
    shown: list[int]  # the drawn leaves (real leaves or collapsed subtrees), in dendrogram order
    pos: np.ndarray  # (num_nodes,), NaN where not drawn
    height: np.ndarray  # (num_nodes,), 0 for leaves
    low: float  # where the drawn leaves end on the merge axis
    top: float
    owner: np.ndarray  # (num_nodes,): the drawn node that each node is drawn as (itself or a collapsed ancestor)
    parent: np.ndarray  # (num_nodes,), -1 for the root


def _layout(tree: Hierarchy, n_shown: int) -> _Layout:
    K, M = tree.num_leaves, tree.num_nodes
    first = M - (n_shown - 1)
    shown, stack = [], [tree.root]
    while stack:  # depth-first, first child first: the same leaf order as `tree.leaves(root)`
        v = stack.pop()
        if v >= first:
            a, b = tree.children[v - K]
            stack += (b, a)
        else:
            shown.append(v)
    pos = np.full(M, np.nan)
    pos[shown] = np.arange(len(shown), dtype=np.float64)
    children = np.asarray(tree.children, dtype=np.int64).reshape(-1, 2)
    for v in range(first, M):  # children have smaller ids, so they are placed before their parent
        a, b = children[v - K]
        pos[v] = 0.5 * (pos[a] + pos[b])
    height = np.zeros(M)
    height[K:] = tree.heights
    top = float(height[-1]) if M > 1 else 1.0
    low = 0.0
    if first > K:  # a truncated view shows only the top merges: the merge axis starts just below them
        lowest = float(height[first:].min())
        low = max(0.0, lowest - 0.05 * (top - lowest))
    parent = np.full(M, -1, dtype=np.int64)
    parent[children.reshape(-1)] = np.repeat(np.arange(K, M), 2)
    owner = np.arange(M)
    for v in range(first - 1, -1, -1):  # parents have larger ids: each node's owner is known before its children's
        if 0 <= parent[v] < first:
            owner[v] = owner[parent[v]]
    return _Layout(first, shown, pos, height, low, top, owner, parent)


def _segments(tree: Hierarchy, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Two-point segments, (S, 2, 2) as (leaf axis, merge axis), and the clade each one draws.

    Each drawn node has a stem up to its parent's height, each drawn internal node a bar across its children:
    a clade is its bar plus its stem, so shading by clade support colours exactly the lines of that clade.
    """
    K, M = tree.num_leaves, tree.num_nodes
    nodes = np.arange(lay.first, M)
    ab = np.asarray(tree.children, dtype=np.int64).reshape(-1, 2)[nodes - K]
    h = lay.height[nodes]
    kids = ab.reshape(-1)
    end = np.where(kids >= lay.first, lay.height[kids], lay.low)
    stems = np.stack(
        [np.column_stack([lay.pos[kids], end]), np.column_stack([lay.pos[kids], np.repeat(h, 2)])], axis=1
    )
    bars = np.stack([np.column_stack([lay.pos[ab[:, 0]], h]), np.column_stack([lay.pos[ab[:, 1]], h])], axis=1)
    return np.concatenate([stems, bars]), np.concatenate([kids, nodes])


def _one_path(segs: np.ndarray) -> Any:
    """One matplotlib Path drawing every two-point segment of `segs` (S, 2, 2)."""
    from matplotlib.path import Path as MplPath

    codes = np.tile(np.array([MplPath.MOVETO, MplPath.LINETO], dtype=np.uint8), len(segs))
    return MplPath(segs.reshape(-1, 2), codes)


def _check_inputs(
    tree: Hierarchy,
    names: Sequence[str] | None,
    groups: Sequence[int] | None,
    group_names: Sequence[str] | Mapping[Any, str] | None,
    support: Any,
    highlight: Sequence[Any] | None,
) -> tuple[list[str], list[Any] | None, np.ndarray | None, list[int]]:
    if not isinstance(tree, Hierarchy):
        raise ValueError(f"hierarchy must be a Hierarchy, got {type(tree).__name__}")
    if not tree.is_binary:
        raise ValueError("hierarchy: drawing a dendrogram needs a binary tree (e.g. from l2h)")
    K = tree.num_leaves
    if names is not None and len(names) != K:
        raise ValueError(f"names has {len(names)} entries for {K} leaves")
    if groups is not None:
        groups = [g.item() if isinstance(g, (torch.Tensor, np.generic)) else g for g in groups]
        if len(groups) != K:
            raise ValueError(f"groups has {len(groups)} entries for {K} leaves")
        if group_names is not None:
            for g in sorted(set(groups)):
                try:
                    group_names[g]
                except (IndexError, KeyError, TypeError):
                    raise ValueError(f"group_names has no name for group {g!r} (used in groups)") from None
    elif group_names is not None:
        raise ValueError("group_names needs groups (one group id per leaf) to name")
    if support is not None:
        support = torch.as_tensor(support).detach().cpu().double().numpy()
        if support.shape != (K - 1,):
            raise ValueError(
                f"support must have shape ({K - 1},), one value per internal node, got {tuple(support.shape)}"
            )
        if not (np.isfinite(support).all() and (support >= 0).all() and (support <= 1).all()):
            raise ValueError("support must hold values in [0, 1] (fractions of bootstrap trees), got values outside")
    marks = []
    for item in highlight or []:
        node = item.get("node") if isinstance(item, Mapping) else item
        try:
            node = int(node)
        except (TypeError, ValueError):
            raise ValueError(f"highlight must hold internal node ids (or records with 'node'), got {item!r}") from None
        if not K <= node < tree.num_nodes:
            raise ValueError(f"highlight: {node} is not an internal node; internal nodes are {K}..{tree.num_nodes - 1}")
        marks.append(node)
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(K)]
    return names, groups, support, marks


def _group_name(group_names: Any, g: Any) -> str:
    return str(group_names[g]) if group_names is not None else f"group {g}"


def _shade(s: np.ndarray) -> np.ndarray:
    """RGBA for clade support s in [0, 1]: faint grey (0) to the tree's ink (1)."""
    grey = _FAINT + (_INK - _FAINT) * s
    return np.column_stack([grey, grey, grey, np.ones_like(grey)])


def _draw(
    ax: Any,
    tree: Hierarchy,
    lay: _Layout,
    labels: list[str],
    colours: list[Any] | None,
    *,
    sideways: bool,
    font: float,
    line_width: float,
    support: np.ndarray | None,
    support_labels: int,
    marks: list[int],
    leaf_labels: bool,
) -> list[Any]:
    """Lines, leaf labels (text artists: ~4x cheaper than tick labels), dots, support and highlight marks.

    Returns the legend handles for support and marks.
    """
    from matplotlib.patches import PathPatch
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    K = tree.num_leaves
    xy = (lambda p, h: (h, p)) if sideways else (lambda p, h: (p, h))
    segs, clade = _segments(tree, lay)
    if sideways:
        segs = segs[..., ::-1]
    if support is not None:  # eleven shades (0, 0.1, ..., 1): one path each, not one SVG element per segment
        shade = np.rint(10 * np.where(clade >= K, support[np.maximum(clade - K, 0)], 1.0)) / 10
    else:
        shade = np.ones(len(segs))
    for s in np.unique(shade):
        colour = _shade(np.array([s]))[0] if support is not None else str(_INK)
        width = line_width * (0.6 + 0.8 * s) if support is not None else line_width
        same = segs[shade == s]
        for i in range(0, len(same), 2000):  # bounded paths: Agg refuses a path that covers too many cells
            ax.add_patch(PathPatch(_one_path(same[i:i + 2000]), fill=False, edgecolor=colour, linewidth=width,
                                   capstyle="projecting", gid=f"lines-support-{s:.1f}"))

    n = len(lay.shown)
    at = np.arange(n, dtype=np.float64)
    fig = ax.figure
    if leaf_labels:
        if sideways:
            where = offset_copy(ax.get_yaxis_transform(), fig, x=font * 0.45 + 3, units="points")
            style = dict(ha="left", va="center")
        else:
            where = offset_copy(ax.get_xaxis_transform(), fig, y=-(font * 0.45 + 3), units="points")
            style = dict(ha="center", va="top", rotation=90)
        for i, text in enumerate(labels):
            ax.text(*((1.0, i) if sideways else (i, 0.0)), text, transform=where, fontsize=font, clip_on=False,
                    color=_darker(colours[i]) if colours is not None else "black", gid="leaf-label", **style)
    if colours is not None:
        ax.scatter(*xy(at, np.full(n, lay.low)), c=colours, s=max(1.0, min(18.0, 2.2 * font**2)), zorder=3,
                   clip_on=False, linewidths=0)

    handles = []
    if support is not None:
        drawn = np.arange(lay.first, tree.num_nodes - 1)  # the root is in every tree: support 1, not labelled
        if support_labels and len(drawn):
            sizes = np.asarray(tree.sizes())[drawn]
            pick = drawn[np.argsort(-sizes, kind="stable")[:support_labels]]
            offset = (-1.5, 1.0) if sideways else (1.5, 1.0)
            for v in pick:
                ax.annotate(f"{100 * support[v - K]:.0f}", xy(lay.pos[v], lay.height[v]), xytext=offset,
                            textcoords="offset points", fontsize=max(font * 0.8, 4), color="0.3",
                            ha="right" if sideways else "left", va="bottom", gid="support-label")
        for s in (1.0, 0.5, 0.0):
            handles.append(Line2D([], [], color=_shade(np.array([s]))[0], lw=line_width * (0.6 + 0.8 * s),
                                  label=f"support {100 * s:.0f}%"))
    if marks:
        rings: dict[tuple[float, float], list[int]] = {}  # one ring a spot, with every rank marked there
        for rank, v in enumerate(marks, start=1):
            d = lay.owner[v]  # a merge inside a collapsed subtree is marked on that subtree's stem
            h = lay.height[d] if d >= lay.first else 0.5 * (lay.low + lay.height[lay.parent[d]])
            rings.setdefault((lay.pos[d], h), []).append(rank)
        for (p, h), ranks in rings.items():
            ax.plot(*xy(p, h), marker="o", ms=max(4.0, font * 0.9), mfc="white", mec=_MARK, mew=1.5, zorder=4,
                    clip_on=False, gid="highlight")
            # below the stem (sideways) or left of it: support labels sit on the other side
            away = max(3.0, font * 0.6)
            ax.annotate(",".join(map(str, ranks)), xy(p, h), xytext=(-away, -away) if sideways else (-away, away),
                        textcoords="offset points", fontsize=max(font, 6), color=_MARK, fontweight="bold",
                        ha="right", va="top" if sideways else "bottom", gid="highlight-label")
        handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec=_MARK, mew=1.5,
                              label="surprising merge (rank)"))

    span = lay.top - lay.low or 1.0
    if sideways:
        ax.set_ylim(n - 0.5, -0.5)  # first leaf at the top, as the label order reads
        ax.set_xlim(lay.top + 0.02 * span, lay.low)
        ax.set_yticks([])
        hidden = ("top", "left", "right")
    else:
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(lay.low, lay.top + 0.02 * span)
        ax.set_xticks([])
        hidden = ("top", "right", "bottom")
    for side in hidden:
        ax.spines[side].set_visible(False)
    return handles


def _leaf_colours(tree: Hierarchy, lay: _Layout, groups: list[Any] | None) -> tuple[list[Any] | None, dict]:
    """Each drawn leaf's group colour: the group's when all its classes share one, grey when mixed."""
    if groups is None:
        return None, {}
    ids = sorted(set(groups), key=lambda g: (str(type(g)), g))
    palette = _palette(len(ids))
    colour_of = {g: palette[i] for i, g in enumerate(ids)}
    colours = []
    for node in lay.shown:
        under = Counter(groups[i] for i in tree.leaves(node))
        colours.append(colour_of[next(iter(under))] if len(under) == 1 else "0.45")
    return colours, colour_of


def plot_dendrogram(
    hierarchy: Hierarchy,
    names: Sequence[str] | None = None,
    groups: Sequence[int] | None = None,
    max_leaves: int | None = MAX_LEAVES,
    ax: Any = None,
    *,
    group_names: Sequence[str] | Mapping[Any, str] | None = None,
    title: str | None = None,
    support: Any = None,
    highlight: Sequence[Any] | None = None,
) -> tuple[Any, Any]:
    """Draw `hierarchy` (binary) as a dendrogram; returns ``(fig, ax)`` (a `matplotlib.figure.Figure`, no pyplot).

    Args:
        hierarchy: a binary tree (e.g. from `l2h`).
        names: one label per leaf (class names); leaf ids when None.
        groups: one coarse group id per leaf (e.g. a ground-truth superclass): leaves and labels are coloured by
            it (grey for a collapsed subtree that mixes groups), with a legend.
        max_leaves: above this many leaves, only the top of the tree is drawn, down to `max_leaves` subtrees;
            each collapsed subtree is labelled with a representative class and how many more it holds.
            None draws every leaf.
        ax: draw into these axes; a new figure sized for K otherwise.
        group_names: the legend's name for each group id (``group_names[g]``: a list or a dict).
        title: the axes title.
        support: (K-1,) clade support in [0, 1], one per internal node (e.g. from `clade_support`): each clade's
            lines are shaded from faint (0) to dark (1), and the largest drawn clades are labelled in percent.
        highlight: internal node ids (or records with a ``"node"`` key, e.g. from `surprising_merges`), most
            important first: each is marked with a red ring and its rank; one inside a collapsed subtree is marked
            on that subtree's stem.

    Up to 40 leaves the tree hangs from the top with leaves along the bottom; beyond that it lies on its side so
    that every label is horizontal, and the figure grows with the number of leaves drawn, up to `MAX_HEIGHT_IN`
    inches (then the names get smaller).

    Example:
        >>> import torch
        >>> from l2h_lightning import l2h
        >>> fig, ax = plot_dendrogram(l2h(torch.randn(200, 12)), names=[f"class {i}" for i in range(12)])
        >>> len([t for t in ax.texts if t.get_gid() == "leaf-label"])
        12
    """
    return _plot_tree(hierarchy, names, groups, max_leaves, ax, group_names, title, support, highlight, None)


def _plot_tree(
    hierarchy: Hierarchy,
    names: Sequence[str] | None,
    groups: Sequence[int] | None,
    max_leaves: int | None,
    ax: Any,
    group_names: Any,
    title: str | None,
    support: Any,
    highlight: Sequence[Any] | None,
    raster_dpi: float | None,
) -> tuple[Any, Any]:
    """`plot_dendrogram`; with `raster_dpi`, leaf names too small to read at that resolution are left out."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names, groups, support, marks = _check_inputs(hierarchy, names, groups, group_names, support, highlight)
    if max_leaves is not None and (int(max_leaves) != max_leaves or max_leaves < 1):
        raise ValueError(f"max_leaves must be a positive integer or None, got {max_leaves!r}")
    K = hierarchy.num_leaves
    truncate = max_leaves is not None and K > max_leaves
    shown = int(max_leaves) if truncate else K
    sideways = shown > 40
    font = 10 if shown <= 20 else 8 if shown <= 60 else 7 if shown <= 200 else 5
    own_figure = ax is None
    if own_figure:
        if sideways:
            size = (10.0, min(MAX_HEIGHT_IN, max(4.0, 0.14 * shown + 1)))
            font = min(font, 0.75 * (size[1] - 0.95) * 72 / shown)  # past the height cap, names shrink to fit
        else:
            size = (max(6.0, 0.3 * shown + 2), 5.0)
        fig = Figure(figsize=size)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if K == 1:
        ax.text(0.5, 0.5, names[0], ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig, ax

    lay = _layout(hierarchy, shown)
    sizes = hierarchy.sizes()
    labels = [names[v] if v < K else f"{names[hierarchy.leaves(v)[0]]} +{sizes[v] - 1}" for v in lay.shown]
    colours, colour_of = _leaf_colours(hierarchy, lay, groups)
    leaf_labels = raster_dpi is None or font * raster_dpi / 72 >= MIN_LABEL_PX
    handles = _draw(ax, hierarchy, lay, labels, colours, sideways=sideways, font=font,
                    line_width=0.8 if shown <= 2000 else 0.4, support=support,
                    support_labels=min(len(lay.shown) - 2, 60), marks=marks, leaf_labels=leaf_labels)
    ax.set_xlabel("merge step") if sideways else ax.set_ylabel("merge step")
    handles = [Patch(color=colour_of[g], label=_group_name(group_names, g)) for g in colour_of] + (
        [Patch(color="0.45", label="mixed groups")] if colours is not None and "0.45" in colours else []) + handles
    legend_text = [h.get_label() for h in handles]
    if handles:
        # outside the axes, on the side away from the labels
        loc, anchor = ("upper right", (-0.02, 1.0)) if sideways else ("upper left", (1.0, 1.0))
        rows = fig.get_size_inches()[1] * 72 * 0.8 / (max(font, 6) * 1.7)  # legend entries that fit in one column
        two_columns = len(handles) > rows
        ax.legend(handles=handles, fontsize=max(font, 6), loc=loc, bbox_to_anchor=anchor, frameon=False,
                  ncol=2 if two_columns else 1)
    if title is None:
        title = f"L2H hierarchy over {K} classes" + (f" (top {shown} subtrees)" if truncate else "")
        if not leaf_labels:
            title += f"\n(names too small to print at {K} leaves: see the SVG or HTML)"
    if own_figure:  # margins from the label lengths: much cheaper than a layout engine measuring every label
        title = "\n".join(_wrap(title, int(fig.get_size_inches()[0] * 72 / (0.6 * 12))))
        _set_margins(fig, max(map(len, labels)) if leaf_labels else 0, font, sideways,
                     max(map(len, legend_text), default=0), bool(handles) and two_columns, title.count("\n"))
    ax.set_title(title)
    return fig, ax


def _set_margins(
    fig: Any, label_chars: int, font: float, sideways: bool, legend_chars: int, two_columns: bool, title_breaks: int
) -> None:
    width, height = fig.get_size_inches()
    char = 0.62 / 72  # inches per point of font size, per character (DejaVu Sans, on average)
    labels = label_chars * font * char + font * 0.45 / 72 + 0.15
    legend = (legend_chars * max(font, 6) * char + 0.45) * (2 if two_columns else 1) + 0.1 if legend_chars else 0.2
    title = 0.22 * title_breaks
    if sideways:
        left, right, bottom, top = max(legend, 0.3), labels + 0.1, 0.55, 0.55 + title
    else:
        left, right, bottom, top = 0.75, legend, labels + 0.1, 0.4 + title
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)


def plot_tree_card(
    hierarchy: Hierarchy,
    names: Sequence[str] | None = None,
    groups: Sequence[int] | None = None,
    *,
    group_names: Sequence[str] | Mapping[Any, str] | None = None,
    title: str | None = None,
    max_groups: int = CARD_GROUPS,
    support: Any = None,
    highlight: Sequence[Any] | None = None,
    width: float = CARD_WIDTH_IN,
    dpi: float = 100,
) -> tuple[Any, Any]:
    """A small picture of the tree's top `max_groups` groups, legible at the size TensorBoard shows an image card.

    Each row is one group (the subtrees left after all but the last ``max_groups - 1`` merges), labelled with its
    classes (``"cat, dog, fox +12"``: as many names as fit, then how many more) and, with `groups`, a bar of its
    classes' ground-truth groups and the name of the most common one (``"vehicles 1 60%"`` when it is not all).
    The top merges are drawn as a dendrogram beside the rows. The default size (390 x ~216 px at 100 dpi) is the
    image area of a card in TensorBoard's Time Series tab, which scales images without smoothing: drawn at that
    size, the text is shown pixel for pixel. Put the metrics in `title` (it wraps at " · "). `support` shades
    clades and `highlight` marks merges as in `plot_dendrogram`. Returns ``(fig, ax)``, ax holding the tree.

    Example:
        >>> import torch
        >>> from l2h_lightning import l2h
        >>> fig, ax = plot_tree_card(l2h(torch.randn(500, 100)), title="epoch 3 · DP 0.41 · LHD 0.22")
        >>> len([t for t in ax.texts if t.get_gid() == "group-label"])
        12
    """
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    names, groups, support, marks = _check_inputs(hierarchy, names, groups, group_names, support, highlight)
    if isinstance(max_groups, bool) or int(max_groups) != max_groups or max_groups < 1:
        raise ValueError(f"max_groups must be a positive integer, got {max_groups!r}")
    if not width > 0:
        raise ValueError(f"width must be positive (inches), got {width!r}")
    K = hierarchy.num_leaves
    n = min(K, int(max_groups))
    if title is None:
        title = f"L2H tree over {K} classes" + (f" · top {n} groups" if n < K else "")
    char_in = 0.56 / 72  # inches per character per point of font size (DejaVu Sans, mixed text)
    title_lines = _wrap(title, int(width / (char_in * CARD_TITLE_PT)))
    head = 0.06 + 0.19 * len(title_lines)
    foot = 0.18 if marks else 0.06  # room for the rank numbers below a merge on the bottom row
    height = head + n * CARD_ROW_IN + foot
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.text(0.5, 1 - 0.04 / height, "\n".join(title_lines), fontsize=CARD_TITLE_PT, ha="center", va="top",
             linespacing=1.15, gid="title")
    tree_w = 0.17 * width
    pad = 0.14 if marks else 0.04  # room for rank numbers left of merges near the root
    ax = fig.add_axes((pad / width, foot / height, tree_w / width, n * CARD_ROW_IN / height))
    if K == 1:
        ax.text(0.5, 0.5, names[0], ha="center", va="center", transform=ax.transAxes, fontsize=CARD_FONT_PT,
                gid="group-label")
        ax.set_axis_off()
        return fig, ax
    lay = _layout(hierarchy, n)
    _draw(ax, hierarchy, lay, [], None, sideways=True, font=CARD_FONT_PT, line_width=1.2, support=support,
          support_labels=0, marks=marks, leaf_labels=False)
    ax.set_xlim(lay.top, lay.low - 0.02 * (lay.top - lay.low or 1.0))
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)

    x = (pad + tree_w + 0.05) / width
    right = 1 - 0.04 / width
    members = [hierarchy.leaves(v) for v in lay.shown]
    beside = blended_transform_factory(fig.transFigure, ax.transData)  # figure x, the tree's rows as y
    if groups is not None:
        ids = sorted(set(groups), key=lambda g: (str(type(g)), g))
        colour_of = dict(zip(ids, _palette(len(ids))))
        strip = 0.14 / width
        group_col = 1.2 / width
        for r, leaves in enumerate(members):
            counts = Counter(groups[i] for i in leaves).most_common()
            start = x
            for g, c in counts:
                share = strip * c / len(leaves)
                ax.add_patch(_rect((start, r - 0.36), share, 0.72, colour_of[g], beside))
                start += share
            top_group, c = counts[0]
            share = "" if c == len(leaves) else f" {100 * c / len(leaves):.0f}%"
            fits = int(group_col * width / (char_in * CARD_FONT_PT)) - len(share)
            text = _fit(_group_name(group_names, top_group), fits) + share
            ax.text(right, r, text, transform=beside, fontsize=CARD_FONT_PT, va="center", ha="right",
                    color=_darker(colour_of[top_group]), clip_on=False, gid="group-name")
        x += strip + 0.05 / width
        right -= group_col + 0.05 / width
    budget = int((right - x) * width / (char_in * CARD_FONT_PT))
    for r, leaves in enumerate(members):
        ax.text(x, r, _class_list([names[i] for i in leaves], budget), transform=beside, fontsize=CARD_FONT_PT,
                va="center", ha="left", clip_on=False, gid="group-label")
    return fig, ax


def _rect(xy: tuple[float, float], w: float, h: float, colour: Any, transform: Any) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, facecolor=colour, linewidth=0, transform=transform, clip_on=False, gid="group-bar")


def _darker(colour: Any) -> tuple[float, ...]:
    """The colour at 70%: light palette entries (yellow, pale blue) stay readable as text on white."""
    from matplotlib.colors import to_rgb

    return tuple(0.7 * c for c in to_rgb(colour))


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters, broken at " · " first, then at spaces."""
    lines: list[str] = []
    for part in text.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.extend(textwrap.wrap(part, width) or [""])
    return lines


def _fit(text: str, budget: int) -> str:
    return text if len(text) <= budget else text[: max(1, budget - 1)] + "\u2026"


def _class_list(names: list[str], budget: int) -> str:
    """``"cat, dog, fox +12"``: the first names that fit in `budget` characters, then how many are left."""
    out = ""
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        piece = name if not out else f"{out}, {name}"
        if len(piece) + (len(f" +{rest}") if rest else 0) <= budget:
            out = piece
        elif not out:  # not even the first name fits: cut it
            return _fit(name, budget - len(f" +{rest}")) + (f" +{rest}" if rest else "")
        else:
            return f"{out} +{len(names) - i}"
    return out


def save_dendrogram(
    hierarchy: Hierarchy,
    path: str | Path,
    names: Sequence[str] | None = None,
    groups: Sequence[int] | None = None,
    *,
    max_leaves: int | None = None,
    dpi: int = 100,
    **kwargs: Any,
) -> Path:
    """Save the dendrogram (every leaf by default) by the suffix: PNG, SVG, PDF, or HTML (explorable); returns the path.

    Keyword arguments go to `plot_dendrogram` (`group_names`, `title`, `support`, `highlight`). SVG keeps names as
    text, so a browser's find-in-page finds a class. ``.html`` writes the self-contained explorable tree of
    `l2h_lightning.views.html` (fold, search, hover) with the same names, groups, support and highlighted merges.

    Example:
        >>> import tempfile, torch
        >>> from l2h_lightning import l2h
        >>> save_dendrogram(l2h(torch.randn(60, 6)), tempfile.mkdtemp() + "/tree.svg").suffix
        '.svg'
    """
    from matplotlib import rc_context

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".png", ".svg", ".pdf", ".html"}:
        raise ValueError(f"path must end in .png, .svg, .pdf or .html, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        from .html import save_html

        unknown = set(kwargs) - {"group_names", "title", "support", "highlight"}
        if unknown:
            raise ValueError(f"save_dendrogram: unknown keyword(s) for .html: {sorted(unknown)}")
        marks = kwargs.get("highlight")
        if marks is not None:  # plain node ids carry no score: marked with surprise 1 and their rank in the list
            marks = [m if isinstance(m, Mapping) else {"node": int(m), "surprise": 1.0, "rank": r}
                     for r, m in enumerate(marks, start=1)]
        return Path(save_html(hierarchy, path, names=names, groups=groups, group_names=kwargs.get("group_names"),
                              support=kwargs.get("support"), surprises=marks, title=kwargs.get("title")))
    unknown = set(kwargs) - {"ax", "group_names", "title", "support", "highlight"}
    if unknown:
        raise ValueError(f"save_dendrogram: unknown keyword(s) {sorted(unknown)}")
    fig, _ = _plot_tree(hierarchy, names, groups, max_leaves, kwargs.get("ax"), kwargs.get("group_names"),
                        kwargs.get("title"), kwargs.get("support"), kwargs.get("highlight"),
                        dpi if suffix == ".png" else None)
    with rc_context({"svg.fonttype": "none", "font.sans-serif": ["DejaVu Sans"]}):  # short SVG styles
        fig.savefig(path, dpi=dpi)
    return path


def figure_to_array(fig: Any) -> np.ndarray:
    """RGB uint8 array (H, W, 3) of a figure, for image loggers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]
