"""`plot()` for the metric modules: matplotlib's object API only (no pyplot state), imported lazily."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plot_values(values: Any, name: str, ax: Any = None, higher_is_better: bool | None = None) -> tuple[Any, Any]:
    """Bars for one value (or a dict of values), lines for a sequence of them (e.g. one per epoch)."""
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(6, 3.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    series = list(values) if isinstance(values, Sequence) and not isinstance(values, dict) else [values]
    series = [v if isinstance(v, dict) else {name: v} for v in series]
    keys = list(series[0])
    if len(series) == 1:
        ax.bar(range(len(keys)), [float(series[0][k]) for k in keys])
        ax.set_xticks(range(len(keys)), keys, rotation=30 if len(keys) > 3 else 0, ha="right" if len(keys) > 3 else "center")
    else:
        for key in keys:
            ax.plot(range(len(series)), [float(v[key]) for v in series], marker="o", label=key)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend()
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}[higher_is_better]
    ax.set_title(name + arrow)
    ax.grid(alpha=0.3)
    return fig, ax
