"""Offline analysis of saved logits: load them, build the tree, score it, write it out (what the CLI does)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .engine import l2h
from .hierarchy import Hierarchy
from .metrics.functional import contingency_table, hierarchy_scores

FORMATS = (".pt", ".npy", ".npz", ".csv")
TOP_PRINTED = 5  # surprising merges printed (and marked on the dendrograms)
MIN_DROP = 1e-6  # suggested cuts need at least this drop in log lift (see explain.levels)


class _BadFile(ValueError):
    """A readable file whose content is wrong (the message says how)."""


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a file")
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    return path


def shard_rows(num_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """Process `rank`'s contiguous rows ``[start, stop)`` of `num_rows` split over `world_size` processes
    (the first ``num_rows % world_size`` processes get one row more; a process may get none).

    Example:
        >>> [shard_rows(5, r, 3) for r in range(3)]
        [(0, 2), (2, 4), (4, 5)]
    """
    base, extra = divmod(num_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def load_array(
    path: str | Path, key: str = "logits", *, mmap: bool = False, shard: tuple[int, int] | None = None
) -> torch.Tensor:
    """A tensor from ``.pt`` (a tensor, or a dict holding `key`), ``.npy``, ``.npz`` (`key`, or its only array) or
    ``.csv`` (comma-separated numbers, no header). Raises ValueError saying what is wrong with the file.

    Args:
        mmap: memory-map ``.npy`` (and zip-format ``.pt``) files copy-on-write: pages are read when used, and
            writes to the tensor stay private to this process (the file is never modified).
        shard: ``(rank, world_size)``: only this process's contiguous block of rows (see `shard_rows`). A
            memory-mapped file reads only those rows; the other formats are read whole, then sliced.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy"); np.save(path, np.eye(3, dtype=np.float32))
        >>> load_array(path, mmap=True, shard=(1, 2)).tolist()
        [[0.0, 0.0, 1.0]]
    """
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unsupported format {suffix or '(none)'}; use one of {', '.join(FORMATS)}")
    try:
        array = _read(path, suffix, key, mmap)
    except _BadFile as err:
        raise ValueError(f"{path}: {err}") from None
    except Exception as err:  # corrupt files: pickle, zip and OS errors of every kind
        raise ValueError(f"{path}: cannot read it as {suffix} ({type(err).__name__}: {err})") from None
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "biufc":
            raise ValueError(f"{path}: has non-numeric content (dtype {array.dtype})")
        if not array.dtype.isnative:  # torch reads native byte order only
            array = array.astype(array.dtype.newbyteorder("="))
    if shard is not None and array.ndim:
        start, stop = shard_rows(array.shape[0], *shard)
        array = array[start:stop]
    if isinstance(array, torch.Tensor):
        return array
    try:
        return torch.from_numpy(array)
    except TypeError:
        raise ValueError(f"{path}: dtype {array.dtype} is not supported; save float16, float32 or float64") from None


def _read(path: Path, suffix: str, key: str, mmap: bool) -> np.ndarray | torch.Tensor:
    if suffix == ".pt":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # the legacy format cannot be mapped
        if isinstance(obj, dict):
            if key not in obj:
                raise _BadFile(f"holds a dict without {key!r} (keys: {sorted(map(str, obj))})")
            obj = obj[key]
        if not isinstance(obj, torch.Tensor):
            raise _BadFile(f"holds a {type(obj).__name__}, not a tensor")
        return obj
    if suffix == ".npy":
        return np.load(path, allow_pickle=False, mmap_mode="c" if mmap else None)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive)
            if key not in names and len(names) != 1:
                raise _BadFile(f"holds no {key!r} array and several others ({names})")
            return archive[key if key in names else names[0]]
    try:
        return np.loadtxt(path, delimiter=",", ndmin=1)
    except ValueError as err:
        raise _BadFile(f"has non-numeric content ({err})") from None


def load_logits(path: str | Path, *, mmap: bool = True, shard: tuple[int, int] | None = None) -> torch.Tensor:
    """(N, K) floating-point logits from any `load_array` format (memory-mapped ``.npy`` by default).

    Integer, boolean and complex arrays are refused, never cast: they are not logits of a classifier, and
    casting would hide a wrong file.
    """
    logits = load_array(path, "logits", mmap=mmap, shard=shard)
    if logits.ndim != 2:
        raise ValueError(f"{path}: logits must be a 2-D (N, K) table, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"{path}: logits must be floating point (float16, float32 or float64), got {logits.dtype}")
    return logits


def load_labels(path: str | Path, *, mmap: bool = False, shard: tuple[int, int] | None = None) -> torch.Tensor:
    """Class ids (N,) from any `load_array` format: a 1-D array of whole numbers >= 0 (bool counts as 0/1)."""
    labels = load_array(path, key="target", mmap=mmap, shard=shard)
    if labels.ndim != 1:
        raise ValueError(f"{path}: target must be a 1-D array of N class ids, got shape {tuple(labels.shape)}")
    if labels.is_complex():
        raise ValueError(f"{path}: target must hold whole class ids, got dtype {labels.dtype}")
    if labels.is_floating_point():
        if not torch.isfinite(labels).all() or not torch.equal(labels, labels.round()):
            raise ValueError(f"{path}: target must hold whole class ids, found fractions or non-finite values")
    labels = labels.long()
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{path}: target must hold class ids >= 0, found {int(labels.min())}")
    return labels


def _read_text(path: str | Path) -> tuple[Path, str]:
    path = _existing_file(path)
    try:
        return path, path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror})") from None


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None


def load_names(path: str | Path) -> list[str]:
    """Names (of classes, or of groups): a JSON list (``.json``) or a text file with one name per line."""
    path, text = _read_text(path)
    if path.suffix.lower() != ".json":
        return [line.strip() for line in text.splitlines() if line.strip()]
    names = _json(path, text)
    if not isinstance(names, list):
        raise ValueError(f"{path}: expected a JSON list of names, got a JSON {type(names).__name__}")
    for i, name in enumerate(names):
        if not isinstance(name, (str, int, float)) or isinstance(name, bool):
            raise ValueError(f"{path}: entry {i} is {json.dumps(name)}, not a name (a string)")
    return [str(n) for n in names]


def load_levels(path: str | Path) -> Hierarchy:
    """A ground-truth tree from label maps: JSON (a list of per-level lists, finest first, one entry per class)
    or CSV/.npy/.npz/.pt (one row per class, one column per level, finest first). Group ids are whole numbers."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path, text = _read_text(path)
        maps = _json(path, text)
        if not isinstance(maps, list) or not maps or not all(isinstance(m, list) for m in maps):
            raise ValueError(f"{path}: expected a JSON list of level maps (lists of group ids, finest first)")
        for i, m in enumerate(maps):
            for j, g in enumerate(m):
                if isinstance(g, bool) or not isinstance(g, (int, float)) or g != int(g):
                    raise ValueError(f"{path}: level map {i}, entry {j} is {json.dumps(g)}, not a whole group id")
        maps = [[int(g) for g in m] for m in maps]
    else:
        table = load_array(path, key="levels")
        if table.ndim not in (1, 2) or table.is_complex():
            raise ValueError(f"{path}: expected a (K, levels) table of group ids, got shape {tuple(table.shape)}")
        if table.is_floating_point() and not torch.equal(table, table.round()):
            raise ValueError(f"{path}: group ids must be whole numbers, found fractions")
        table = table.long()
        maps = (table[:, None] if table.ndim == 1 else table).T.tolist()
    try:
        return Hierarchy.from_levels(maps)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a set of level maps ({err})") from None


def check_out_dir(path: str | Path) -> Path:
    """Create the output folder if needed and make sure files can be written into it (ValueError otherwise)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".l2h_probe_", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{path}: cannot write there ({err.strerror or err})") from None
    return path


def analyze(
    logits: torch.Tensor,
    target: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    target_hierarchy: Hierarchy | None = None,
    aggregation: str = "cluster_mean",
    out_dir: str | Path | None = None,
    *,
    group_names: Sequence[str] | None = None,
    inplace: bool = False,
    process_group: Any = None,
    support: int = 0,
    seed: int = 0,
    surprises: int = 20,
    reload: Callable[[], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Build the L2H tree of `logits` (N, K), score it when `target` is given, explain it, and optionally write
    the results.

    Args:
        group_names: names of the coarsest level of `target_hierarchy`'s groups (legend, surprise labels).
        inplace: let the engine overwrite `logits` (memory-bounded); they are not used afterwards: what needs
            them again (clade support, the points behind surprising merges) gets them from `reload`.
        process_group: a `torch.distributed` group: every process passes its own rows (and their targets);
            all get the same tree and the same metrics (from the summed contingency table). Pass `out_dir`
            on one process only.
        support: number of bootstrap replicates for clade support (0: none); `seed` seeds them.
        surprises: with `target_hierarchy`, how many of the most surprising merges to keep.
        reload: returns the logits unchanged (e.g. memory-maps the file again) after an in-place run.

    Returns ``{"num_points", "num_classes", "seconds", "aggregation", "hierarchy", "metrics", "surprises",
    "cuts", "support", "files", "failures"}``. With `out_dir`, writes ``tree.json`` (`Hierarchy.to_dict()`,
    the names and the support), ``tree.nwk``, with targets ``metrics.json``, with `target_hierarchy`
    ``surprises.json``, ``cuts.json`` (the suggested cuts, their groups and level scores), ``tree.html`` (the
    explorable tree: fold, search, hover), then ``dendrogram.png`` (the top 150 subtrees when K is larger,
    plus ``dendrogram_full.svg`` with every leaf). Each file is written on its own (through a temporary name,
    so no half-written file is left): one that fails is listed in ``failures`` (file name -> reason; "clade
    support" when that computation failed) and the others are still written.

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
    if reload is None:
        reload = (lambda kept=logits: kept) if not inplace else None
    # the table needs the argmax before an in-place engine run overwrites the logits
    counts = _counts(logits, target, target_hierarchy, process_group) if target is not None else None
    num_points = _all_sum(torch.tensor(logits.shape[0], device=logits.device), process_group).item()
    start = time.perf_counter()
    tree = l2h(logits, aggregation, inplace=inplace, process_group=process_group)
    if logits.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del logits  # after an in-place run it holds the engine's scratch values
    metrics = None
    if counts is not None:
        scores = hierarchy_scores(tree, target_hierarchy=target_hierarchy, counts=counts)
        metrics = {k: float(v) for k, v in scores.items()}
    result = {
        "num_points": int(num_points),
        "num_classes": tree.num_leaves,
        "seconds": seconds,
        "aggregation": aggregation,
        "hierarchy": tree,
        "metrics": metrics,
        "surprises": None,
        "cuts": None,
        "support": None,
        "files": [],
        "failures": {},
    }
    _explain(result, counts, names, target_hierarchy, group_names, support, seed, surprises, reload, process_group)
    if out_dir is not None:
        files, failures = _write(result, Path(out_dir), names, target_hierarchy, group_names)
        result["files"] = files
        result["failures"].update(failures)
    return result


def _explain(
    result: dict,
    counts: torch.Tensor | None,
    names: Sequence[str] | None,
    truth: Hierarchy | None,
    group_names: Sequence[str] | None,
    n_boot: int,
    seed: int,
    top: int,
    reload: Callable[[], torch.Tensor] | None,
    group: Any,
) -> None:
    """Surprising merges (with a truth), suggested cuts and clade support (with `n_boot`), each on its own: one
    that fails is recorded in ``result["failures"]`` and the others are still computed."""
    from .explain import clade_support, cut_scores, suggest_cuts, surprising_merges

    tree: Hierarchy = result["hierarchy"]
    if n_boot:  # first: on several processes every one must take part in its engine runs
        try:
            if reload is None:
                raise ValueError("the logits were overwritten and there is no way to read them again")
            result["support"] = clade_support(reload(), tree, n_boot=n_boot, seed=seed,
                                              aggregation=result["aggregation"], process_group=group)
        except Exception as err:
            result["failures"]["clade support"] = _one_line(err)
    if truth is not None and tree.num_leaves > 1:
        try:
            # point indices are this process's own rows: only meaningful on one process
            logits = reload() if reload is not None and group is None else None
            legend = group_names if truth.coarse_groups() == truth.levels[-1].tolist() else None
            records = surprising_merges(tree, truth, logits=logits, counts=counts, names=names, group_names=legend,
                                        top=top)
            result["surprises"] = [_jsonable(r) for r in records]
        except Exception as err:
            result["failures"]["surprises.json"] = _one_line(err)
    if tree.evidence and tree.num_leaves > 2:
        try:
            drops = cut_scores(tree)
            # drops at rounding level (e.g. a chain from all-equal logits) are no reason to read a cut
            cuts = [n for n in suggest_cuts(tree) if drops[n] > MIN_DROP]
            result["cuts"] = [{**_cut(tree, n, counts, truth, names), "drop": float(drops[n])} for n in cuts]
        except Exception as err:
            result["failures"]["cuts.json"] = _one_line(err)


def _cut(tree: Hierarchy, n: int, counts: torch.Tensor | None, truth: Hierarchy | None, names: Any) -> dict:
    """One suggested cut: its groups (class names, in the dendrogram's order) and, with targets and a truth,
    NMI/ARI/ACC of that grouping of the points against every truth level."""
    from .metrics.functional.level_scores import _acc, _ari, _nmi

    cut = tree.cut(n).tolist()
    record: dict[str, Any] = {"groups": n, "members": _groups_of(tree, n, names)}
    if counts is not None and truth is not None and truth.levels and counts.sum() > 0:
        pred = torch.tensor(cut)
        scores = {}
        for i, level in enumerate(truth.levels, start=1):
            true = torch.unique(level, return_inverse=True)[1]
            table = torch.zeros(n, int(true.max()) + 1, dtype=torch.float64)
            c = counts.double().cpu()
            table.index_put_((pred[:, None].expand_as(c), true[None, :].expand_as(c)), c, accumulate=True)
            scores.update({f"level{i}/nmi": float(_nmi(table)), f"level{i}/ari": float(_ari(table)),
                           f"level{i}/acc": float(_acc(table))})
        record["level_scores"] = scores
    return record


def _jsonable(value: Any) -> Any:
    """Records as strict JSON: tensors and tuples to lists, NaN and infinities to None."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _all_sum(x: torch.Tensor, group: Any) -> torch.Tensor:
    if group is not None:
        import torch.distributed as dist

        dist.all_reduce(x, group=group)
    return x


def _counts(logits: torch.Tensor, target: torch.Tensor, truth: Hierarchy | None, group: Any) -> torch.Tensor:
    """The (K, C) contingency table of every process's rows; C from the target hierarchy, else the largest id."""
    K = logits.shape[1]
    target = target.to(logits.device)
    if truth is not None:
        C = truth.num_leaves
    else:
        largest = target.max() if target.numel() else torch.tensor(-1, device=logits.device)
        if group is not None:
            import torch.distributed as dist

            dist.all_reduce(largest, op=dist.ReduceOp.MAX, group=group)
        C = int(largest) + 1 if int(largest) >= 0 else 1
    if target.numel() and int(target.max()) >= C:
        raise ValueError(f"target has class id {int(target.max())}, but the target hierarchy has {C} classes")
    preds = logits.argmax(1) if logits.shape[0] else torch.zeros(0, dtype=torch.long, device=logits.device)
    return _all_sum(contingency_table(preds, target, K, C), group)


def _atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Write through a temporary name in the same folder, then rename: a failed write leaves no partial file."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write(
    result: dict,
    out: Path,
    names: Sequence[str] | None,
    truth: Hierarchy | None,
    group_names: Sequence[str] | None,
) -> tuple[list[Path], dict[str, str]]:
    from .views.dendrogram import MAX_LEAVES, save_dendrogram
    from .views.html import save_html

    out.mkdir(parents=True, exist_ok=True)
    tree: Hierarchy = result["hierarchy"]
    groups = _groups(tree, truth, group_names)
    support = result["support"]
    picture: dict[str, Any] = {"group_names": group_names} if group_names is not None else {}
    if support is not None:
        picture["support"] = support
    if result["surprises"]:
        picture["highlight"] = result["surprises"][:TOP_PRINTED]
    names_list = list(names) if names is not None else None
    tree_json = {**tree.to_dict(), "names": names_list, "support": None if support is None else support.tolist()}
    # the small files people and programs read first, then the pictures (slowest, and the likeliest to fail)
    outputs: list[tuple[str, Callable[[Path], Any]]] = [
        ("tree.json", lambda p: _text(p, json.dumps(_jsonable(tree_json)))),
        ("tree.nwk", lambda p: _text(p, tree.to_newick(names) + "\n")),
    ]
    if result["metrics"] is not None:
        head = {k: result[k] for k in ("num_points", "num_classes", "seconds", "aggregation")}
        cuts = {"suggested_cuts": [c["groups"] for c in result["cuts"]]} if result["cuts"] is not None else {}
        metrics = _jsonable({**head, **result["metrics"], **cuts})  # JSON has no NaN: null
        outputs.append(("metrics.json", lambda p: _text(p, json.dumps(metrics, indent=1))))
    if result["surprises"] is not None:
        outputs.append(("surprises.json", lambda p: _text(p, json.dumps(result["surprises"], indent=1))))
    if result["cuts"] is not None:
        outputs.append(("cuts.json", lambda p: _text(p, json.dumps(result["cuts"], indent=1))))
    page = _page(result, names, groups, group_names)
    outputs.append(("tree.html", lambda p: save_html(tree, p, **page)))
    outputs.append(("dendrogram.png", lambda p: save_dendrogram(tree, p, names, groups, max_leaves=MAX_LEAVES, **picture)))
    if tree.num_leaves > MAX_LEAVES:
        outputs.append(("dendrogram_full.svg", lambda p: save_dendrogram(tree, p, names, groups, **picture)))
    files, failures = [], {}
    for name, write in outputs:
        try:
            files.append(_atomic(out / name, write))
        except Exception as err:  # each output on its own: one failure must not cost the others
            failures[name] = _one_line(err)
    return files, failures


def _text(path: Path, content: str) -> None:
    path.write_text(content, encoding="utf-8")


def _page(result: dict, names: Any, groups: Any, group_names: Any) -> dict[str, Any]:
    """`save_html`'s arguments: the names, the groups and a heading with the scores."""
    shown = {"dp": "DP", "lhd": "LHD", "leaf_purity": "leaf purity"}
    metrics = {label: result["metrics"][k] for k, label in shown.items() if k in (result["metrics"] or {})}
    return {
        "names": names,
        "groups": groups,
        "group_names": group_names if groups is not None else None,
        "title": f"L2H tree of {result['num_points']} points over {result['num_classes']} classes ({result['aggregation']})",
        "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
        "support": result["support"],
        "surprises": result["surprises"],
    }


def _groups(tree: Hierarchy, truth: Hierarchy | None, group_names: Sequence[str] | None) -> list[int] | None:
    if truth is None or truth.num_leaves != tree.num_leaves:
        return None
    if group_names is not None:  # the names are for the coarsest given level, even one that has a single group
        return truth.levels[-1].tolist() if truth.levels else None
    return truth.coarse_groups()


def _one_line(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message[:300]}" if message else type(err).__name__


def summary(result: dict[str, Any], names: Sequence[str] | None = None, groups: int = 4, shown: int = 8) -> str:
    """A few lines for people: sizes, time, metrics, the classes in the top-level groups, and what `analyze`
    found: the most surprising merges, the suggested cuts, the clade support."""
    tree: Hierarchy = result["hierarchy"]
    K = tree.num_leaves
    lines = [f"{result['num_points']} points, {K} classes: L2H ({result['aggregation']}) in {result['seconds']:.3f} s"]
    for name, value in (result["metrics"] or {}).items():
        lines.append(f"  {name:<16} {value:.4f}")
    if K > 1:
        n = min(groups, K)
        lines.append(f"top {n} groups of the tree:")
        lines += [f"  {_members(group, shown)}" for group in _groups_of(tree, n, names)]
    if result.get("surprises"):
        lines.append(f"most surprising merges (of {K - 1}):")
        for r in result["surprises"][:TOP_PRINTED]:
            level = "" if r["truth_level"] is None else f", joined at truth level {r['truth_level']:g}"
            lines.append(f"  {r['surprise']:.3f}  node {r['node']}: {r['label']}{level}")
    if result.get("cuts"):
        lines.append("suggested cuts: " + ", ".join(f"{c['groups']} groups" for c in result["cuts"]))
        for c in result["cuts"]:
            scores = c.get("level_scores") or {}
            if scores:
                text = "; ".join(f"{k} {v:.3f}" for k, v in scores.items() if k.endswith(("/nmi", "/ari")))
                lines.append(f"  {c['groups']} groups: {text}")
    support = result.get("support")
    if support is not None and support.numel():
        lines.append(f"clade support: {int((support >= 0.9).sum())} of {support.numel()} clades in >= 90% of the "
                     f"bootstrap trees, median {float(support.median()):.2f}")
    return "\n".join(lines)


def _groups_of(tree: Hierarchy, n: int, names: Sequence[str] | None) -> list[list[str]]:
    """The classes of each group when `tree` is cut into `n` groups, in the dendrogram's order."""
    cut = tree.cut(n).tolist()
    members: list[list[str]] = [[] for _ in range(n)]
    for leaf in tree.leaves(tree.root):
        members[cut[leaf]].append(str(names[leaf]) if names is not None else str(leaf))
    return members


def _members(group: list[str], shown: int) -> str:
    more = f" ... (+{len(group) - shown})" if len(group) > shown else ""
    return f"[{len(group)}] " + ", ".join(group[:shown]) + more
