"""Offline analysis of saved logits: load them, build the tree, score it, write it out (what the CLI does)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .engine import l2h
from .hierarchy import Hierarchy
from .metrics.functional import hierarchy_scores

FORMATS = (".pt", ".npy", ".npz", ".csv")


class _BadFile(ValueError):
    """A readable file whose content is wrong (the message says how)."""


def load_array(path: str | Path, key: str = "logits") -> torch.Tensor:
    """A tensor from ``.pt`` (a tensor, or a dict holding `key`), ``.npy``, ``.npz`` (`key`, or its only array) or
    ``.csv`` (comma-separated numbers, no header). Raises ValueError saying what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported format {suffix or '(none)'}; use one of {', '.join(FORMATS)}")
    try:
        if suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                if key not in obj:
                    raise _BadFile(f"holds a dict without {key!r} (keys: {sorted(map(str, obj))})")
                obj = obj[key]
            if not isinstance(obj, torch.Tensor):
                raise _BadFile(f"holds a {type(obj).__name__}, not a tensor")
            return obj
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive)
                if key not in names and len(names) != 1:
                    raise _BadFile(f"holds no {key!r} array and several others ({names})")
                array = archive[key if key in names else names[0]]
        else:
            try:
                array = np.loadtxt(path, delimiter=",", ndmin=1)
            except ValueError as err:
                raise _BadFile(f"has non-numeric content ({err})") from None
    except _BadFile as err:
        raise ValueError(f"{path}: {err}") from None
    except Exception as err:  # corrupt files: pickle, zip and OS errors of every kind
        raise ValueError(f"{path}: cannot read it as {suffix} ({type(err).__name__}: {err})") from None
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise ValueError(f"{path}: has non-numeric content (dtype {array.dtype})")
    return torch.from_numpy(np.ascontiguousarray(array))


def load_labels(path: str | Path) -> torch.Tensor:
    """Class ids (N,) from any `load_array` format; whole numbers only."""
    labels = load_array(path, key="target").flatten()
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError(f"{path}: target must hold whole class ids, found fractions")
        labels = labels.long()
    return labels


def load_names(path: str | Path) -> list[str]:
    """Class names: one per line (a text file), or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        names = json.loads(text)
        if not isinstance(names, list):
            raise ValueError(f"{path}: expected a JSON list of names")
        return [str(n) for n in names]
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_levels(path: str | Path) -> Hierarchy:
    """A ground-truth tree from label maps: JSON (a list of per-level lists, finest first, one entry per class)
    or CSV (one row per class, one column per level, finest first)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        if path.suffix.lower() == ".json":
            maps = json.loads(path.read_text())
        else:
            maps = load_array(path, key="levels").long()
            maps = (maps[:, None] if maps.ndim == 1 else maps).T.tolist()
        return Hierarchy.from_levels(maps)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a set of level maps ({err})") from None


def analyze(
    logits: torch.Tensor,
    target: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    target_hierarchy: Hierarchy | None = None,
    aggregation: str = "cluster_mean",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build the L2H tree of `logits` (N, K), score it when `target` is given, and optionally write the results.

    Returns ``{"num_points", "num_classes", "seconds", "aggregation", "hierarchy", "metrics", "files"}``; with
    `out_dir`, writes ``dendrogram.png`` (the top 150 subtrees when K is larger, plus ``dendrogram_full.svg`` with
    every leaf), ``tree.json`` (`Hierarchy.to_dict()` and the names), ``tree.nwk`` and, with targets,
    ``metrics.json``.

    Example:
        >>> import torch
        >>> result = analyze(torch.randn(100, 5), torch.randint(5, (100,)))
        >>> sorted(result["metrics"])
        ['dp', 'empty_clusters', 'leaf_purity', 'lhd']
    """
    K = logits.shape[-1] if logits.ndim == 2 else None
    if names is not None and K is not None and len(names) != K:
        raise ValueError(f"names has {len(names)} entries but the logits have K = {K} columns")
    if target is not None and logits.ndim == 2 and target.shape[0] != logits.shape[0]:
        raise ValueError(f"target has {target.shape[0]} labels but the logits have N = {logits.shape[0]} rows")
    start = time.perf_counter()
    tree = l2h(logits, aggregation)
    if logits.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    metrics = None
    if target is not None:
        scores = hierarchy_scores(tree, logits, target.to(logits.device), target_hierarchy)
        metrics = {k: float(v) for k, v in scores.items()}
    result = {
        "num_points": logits.shape[0],
        "num_classes": tree.num_leaves,
        "seconds": seconds,
        "aggregation": aggregation,
        "hierarchy": tree,
        "metrics": metrics,
        "files": [],
    }
    if out_dir is not None:
        result["files"] = _write(result, Path(out_dir), names, target_hierarchy)
    return result


def _write(result: dict, out: Path, names: Sequence[str] | None, truth: Hierarchy | None) -> list[Path]:
    from .plotting import MAX_LEAVES, save_dendrogram

    out.mkdir(parents=True, exist_ok=True)
    tree: Hierarchy = result["hierarchy"]
    groups = truth.coarse_groups() if truth is not None and truth.num_leaves == tree.num_leaves else None
    files = [save_dendrogram(tree, out / "dendrogram.png", names, groups, max_leaves=MAX_LEAVES)]
    if tree.num_leaves > MAX_LEAVES:
        files.append(save_dendrogram(tree, out / "dendrogram_full.svg", names, groups))
    files.append(out / "tree.json")
    files[-1].write_text(json.dumps({**tree.to_dict(), "names": list(names) if names is not None else None}))
    files.append(out / "tree.nwk")
    files[-1].write_text(tree.to_newick(names) + "\n")
    if result["metrics"] is not None:
        files.append(out / "metrics.json")
        summary = {k: result[k] for k in ("num_points", "num_classes", "seconds", "aggregation")}
        files[-1].write_text(json.dumps({**summary, **result["metrics"]}, indent=1))
    return files


def summary(result: dict[str, Any], names: Sequence[str] | None = None, groups: int = 4, shown: int = 8) -> str:
    """A few lines for people: sizes, time, metrics, and the classes in the top-level groups."""
    tree: Hierarchy = result["hierarchy"]
    K = tree.num_leaves
    lines = [f"{result['num_points']} points, {K} classes: L2H ({result['aggregation']}) in {result['seconds']:.3f} s"]
    for name, value in (result["metrics"] or {}).items():
        lines.append(f"  {name:<16} {value:.4f}")
    if K > 1:
        n = min(groups, K)
        cut = tree.cut(n).tolist()
        label = (lambda i: str(names[i])) if names is not None else str
        lines.append(f"top {n} groups of the tree:")
        for g in range(n):
            members = [label(i) for i in tree.leaves(tree.root) if cut[i] == g]
            more = f" ... (+{len(members) - shown})" if len(members) > shown else ""
            lines.append(f"  [{len(members)}] " + ", ".join(members[:shown]) + more)
    return "\n".join(lines)
