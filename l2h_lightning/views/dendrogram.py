"""Dendrogram pictures that stay readable from K=10 to K=1,000 (matplotlib's object API; no pyplot state).

Heights are the merge step (1..K-1): the n-th merge of L2H is drawn at height n.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..hierarchy import Hierarchy

MAX_LEAVES = 150


def plot_dendrogram(
    hierarchy: Hierarchy,
    names: Sequence[str] | None = None,
    groups: Sequence[int] | None = None,
    max_leaves: int | None = MAX_LEAVES,
    ax: Any = None,
    *,
    group_names: Sequence[str] | None = None,
    title: str | None = None,
) -> tuple[Any, Any]:
    """Draw `hierarchy` (binary) as a dendrogram; returns ``(fig, ax)``.

    Args:
        hierarchy: a binary tree (e.g. from `l2h`).
        names: one label per leaf (class names); leaf ids when None.
        groups: one coarse group id per leaf (e.g. a ground-truth superclass): leaves and labels are coloured by
            it, with a legend (named by `group_names` when given).
        max_leaves: above this many leaves, only the top of the tree is drawn, down to `max_leaves` subtrees;
            each collapsed subtree is labelled with a representative class and how many classes it holds.
            None draws every leaf.
        ax: draw into these axes; a new `matplotlib.figure.Figure` sized for K otherwise.
        title: the axes title.

    Up to 40 leaves the tree hangs from the top with leaves along the bottom; beyond that it lies on its side so
    that every label is horizontal, and the figure grows with the number of leaves drawn.

    Example:
        >>> import torch
        >>> from l2h_lightning import l2h
        >>> fig, ax = plot_dendrogram(l2h(torch.randn(200, 12)), names=[f"class {i}" for i in range(12)])
        >>> len(ax.get_xticklabels())
        12
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from scipy.cluster.hierarchy import dendrogram

    if not hierarchy.is_binary:
        raise ValueError("plot_dendrogram needs a binary tree (e.g. from l2h)")
    K = hierarchy.num_leaves
    if names is not None and len(names) != K:
        raise ValueError(f"names has {len(names)} entries for {K} leaves")
    if groups is not None and len(groups) != K:
        raise ValueError(f"groups has {len(groups)} entries for {K} leaves")
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(K)]
    truncate = max_leaves is not None and K > max_leaves
    shown = min(K, max_leaves) if truncate else K
    sideways = shown > 40
    font = 10 if shown <= 20 else 8 if shown <= 60 else 7 if shown <= 200 else 5
    own_figure = ax is None
    if own_figure:
        size = (10, max(4, 0.14 * shown + 1)) if sideways else (max(6, 0.3 * shown + 2), 5)
        fig = Figure(figsize=size)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if K == 1:
        ax.text(0.5, 0.5, names[0], ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig, ax

    Z = hierarchy.to_linkage()
    tree = dendrogram(Z, no_plot=True, truncate_mode="lastp" if truncate else None, p=shown, labels=names)
    group_of = list(groups) if groups is not None else None
    palette = _palette(len(set(group_of))) if group_of is not None else None
    colour_of = {g: palette[i] for i, g in enumerate(sorted(set(group_of)))} if group_of is not None else {}

    labels, colours = [], []
    for node in tree["leaves"]:
        under = hierarchy.leaves(node)
        if node < K:
            labels.append(names[node])
        else:
            labels.append(f"{names[under[0]]} +{len(under) - 1}")
        if group_of is not None:
            common, count = Counter(group_of[i] for i in under).most_common(1)[0]
            colours.append(colour_of[common] if count == len(under) else "0.45")

    links = [np.column_stack((ys, xs) if sideways else (xs, ys)) for xs, ys in zip(tree["icoord"], tree["dcoord"])]
    ax.add_collection(LineCollection(links, colors="0.25", linewidths=0.8))
    ticks = 5 + 10 * np.arange(len(labels))
    # a truncated view shows only the top merges: start the height axis just below them
    top = float(Z[-1, 2])
    low = 0.0
    if truncate:
        drawn = min(h for ys in tree["dcoord"] for h in ys if h > 0)
        low = max(0.0, drawn - 0.05 * (top - drawn))
    if sideways:
        ax.set_yticks(ticks, labels, fontsize=font)
        ax.set_ylim(0, 10 * len(labels))
        ax.set_xlim(top * 1.02, low)
        ax.set_xlabel("merge step")
        ax.yaxis.tick_right()
        tick_labels = ax.get_yticklabels()
    else:
        ax.set_xticks(ticks, labels, fontsize=font, rotation=90)
        ax.set_xlim(0, 10 * len(labels))
        ax.set_ylim(low, top * 1.02)
        ax.set_ylabel("merge step")
        tick_labels = ax.get_xticklabels()
    if group_of is not None:
        for label, colour in zip(tick_labels, colours):
            label.set_color(colour)
        at = (np.full(len(labels), low), ticks) if sideways else (ticks, np.full(len(labels), low))
        ax.scatter(*at, c=colours, s=18, zorder=3, clip_on=False)
        handles = [
            Patch(color=colour_of[g], label=str(group_names[g]) if group_names is not None else f"group {g}")
            for g in sorted(colour_of)
        ]
        # outside the axes, on the side away from the labels
        loc, anchor = ("upper right", (-0.02, 1.0)) if sideways else ("upper left", (1.0, 1.0))
        ax.legend(handles=handles, fontsize=max(font, 6), loc=loc, bbox_to_anchor=anchor, frameon=False,
                  ncol=1 if len(handles) <= 20 else 2)
    for side in ("top", "right") if not sideways else ("top", "left"):
        ax.spines[side].set_visible(False)
    if title is None:
        title = f"L2H hierarchy over {K} classes" + (f" (top {shown} subtrees)" if truncate else "")
    ax.set_title(title)
    if own_figure:  # margins from the label lengths: much cheaper than a layout engine measuring every label
        legend = [str(group_names[g]) if group_names is not None else f"group {g}" for g in colour_of]
        _set_margins(fig, max(map(len, labels)), font, sideways, max(map(len, legend), default=0), len(legend) > 20)
    return fig, ax


def _set_margins(fig: Any, label_chars: int, font: float, sideways: bool, legend_chars: int, two_columns: bool) -> None:
    width, height = fig.get_size_inches()
    char = 0.62 / 72  # inches per point of font size, per character (DejaVu Sans, on average)
    labels = label_chars * font * char + 0.15
    legend = (legend_chars * max(font, 6) * char + 0.45) * (2 if two_columns else 1) + 0.1 if legend_chars else 0.2
    if sideways:
        left, right, bottom, top = max(legend, 0.3), labels + 0.1, 0.55, 0.4
    else:
        left, right, bottom, top = 0.75, legend, labels + 0.1, 0.4
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)


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
    """Save the dendrogram (every leaf by default) to PNG, SVG or PDF (by the suffix); returns the path."""
    fig, _ = plot_dendrogram(hierarchy, names, groups, max_leaves, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
