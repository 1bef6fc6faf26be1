"""The K×C contingency table n[k, c] = #points predicted k with class c: every metric's sufficient statistic."""

from __future__ import annotations

from typing import Any

import torch

from ...hierarchy import Hierarchy, _as_int

_BLOCK = 1 << 21  # elements per block in the blocked sums over nodes and classes


def contingency_table(
    preds: torch.Tensor, target: torch.Tensor, num_clusters: int, num_classes: int
) -> torch.Tensor:
    """(num_clusters, num_classes) int64 counts from cluster ids (N,) or logits (N, K) and class ids (N,).

    Ids must be integer (or bool) tensors inside 0..num_clusters-1 and 0..num_classes-1; logits must not hold NaN
    (their argmax would be meaningless). `target` is moved to `preds`' device.

    Example:
        >>> contingency_table(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0]), 2, 2).tolist()
        [[0, 2], [1, 0]]
    """
    num_clusters, num_classes = _as_int(num_clusters, "num_clusters"), _as_int(num_classes, "num_classes")
    if num_clusters < 1 or num_classes < 1:
        raise ValueError(f"num_clusters and num_classes must be positive, got {num_clusters} and {num_classes}")
    preds, target = _tensor(preds, "preds"), _tensor(target, "target")
    if preds.ndim == 2:
        if preds.shape[1] != num_clusters:
            raise ValueError(f"preds are logits over {preds.shape[1]} clusters, but the tree has {num_clusters} leaves")
        if preds.is_floating_point():
            bad = int(preds.isnan().any(1).sum())
            if bad:
                raise ValueError(f"preds are logits with NaN entries in {bad} of {preds.shape[0]} row(s): no argmax")
        if preds.is_complex():
            raise ValueError(f"preds must be real logits or integer cluster ids, got dtype {preds.dtype}")
        preds = preds.argmax(1) if preds.shape[0] else torch.zeros(0, dtype=torch.long, device=preds.device)
    if preds.ndim != 1 or target.ndim != 1:
        raise ValueError(
            f"preds must be cluster ids (N,) or logits (N, K) and target class ids (N,); "
            f"got shapes {tuple(preds.shape)} and {tuple(target.shape)}"
        )
    if preds.numel() != target.numel():
        raise ValueError(f"preds has {preds.numel()} points but target has {target.numel()}")
    for name, x, size in (("preds", preds, num_clusters), ("target", target, num_classes)):
        if x.is_floating_point() or x.is_complex():
            raise ValueError(f"{name} must hold integer ids, got dtype {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= size):
            raise ValueError(f"{name} has ids outside 0..{size - 1} (min {int(x.min())}, max {int(x.max())})")
    flat = preds.long() * num_classes + target.long().to(preds.device)
    return torch.bincount(flat, minlength=num_clusters * num_classes).view(num_clusters, num_classes)


def _tensor(x: Any, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a tensor (or array) of numbers: {err}") from None


def _check_tree(tree: Any, name: str, optional: bool = False) -> None:
    if (tree is None and optional) or isinstance(tree, Hierarchy):
        return
    hint = " (build one with Hierarchy.from_levels(maps) or l2h(logits))"
    raise ValueError(f"{name} must be a Hierarchy{' or None' if optional else ''}, got {type(tree).__name__}{hint}")


def _check_counts(counts: Any, K: int | None = None, num_classes: int | None = None) -> torch.Tensor:
    """A valid (K, C) table of non-negative whole counts with at least one point, as float64."""
    counts = _tensor(counts, "counts")
    if counts.ndim != 2 or (K is not None and counts.shape[0] != K):
        what = f"a ({K}, C) table for a tree over {K} leaves" if K is not None else "a 2-D (clusters, classes) table"
        raise ValueError(f"counts must be {what}, got shape {tuple(counts.shape)}")
    if num_classes is not None and counts.shape[1] != num_classes:
        raise ValueError(f"counts has {counts.shape[1]} classes, the target hierarchy has {num_classes}")
    if counts.is_complex() or counts.dtype == torch.bool:
        raise ValueError(f"counts must hold real numbers, got dtype {counts.dtype}")
    counts = counts.double()
    bad = int((~counts.isfinite()).sum())
    if bad:
        raise ValueError(f"counts must be finite, got {bad} NaN or infinite entries")
    if (counts < 0).any():
        raise ValueError(f"counts must not be negative, got {int((counts < 0).sum())} negative entries")
    frac = counts != counts.round()
    if frac.any():
        # pair counts C(n, 2) of fractional n are no pair counts (C(0.5, 2) < 0): scores would leave [0, 1]
        raise ValueError(f"counts must be whole numbers of points, got fractional entries (e.g. {float(counts[frac][0])!r})")
    if counts.shape[1] == 0 or not counts.sum() > 0:
        raise ValueError("counts hold no points (the table sums to 0): there is nothing to score")
    return counts


def _counts(
    hierarchy: Hierarchy,
    preds: torch.Tensor | None,
    target: torch.Tensor | None,
    counts: torch.Tensor | None,
    target_hierarchy: Hierarchy | None = None,
) -> torch.Tensor:
    """The contingency table, from (preds, target) or as given, checked against both trees; float64."""
    _check_tree(hierarchy, "hierarchy")
    _check_tree(target_hierarchy, "target_hierarchy", optional=True)
    K = hierarchy.num_leaves
    num_classes = target_hierarchy.num_leaves if target_hierarchy is not None else None
    if counts is None:
        if preds is None or target is None:
            raise ValueError("pass preds and target, or counts=")
        target = _tensor(target, "target")
        if num_classes is None:
            num_classes = int(target.max()) + 1 if target.numel() and not target.is_complex() else 1
            num_classes = max(num_classes, 1)
        counts = contingency_table(preds, target, K, num_classes)
    elif preds is not None or target is not None:
        raise ValueError("pass preds and target, or counts=, not both")
    return _check_counts(counts, K, num_classes)


def _node_counts(tree: Hierarchy, leaf_rows: torch.Tensor) -> torch.Tensor:
    """Sum of `leaf_rows` (K, D) under every node: (num_nodes, D), in O(num_nodes × D) via the leaf order."""
    order, start, end = (t.to(leaf_rows.device) for t in tree.spans())
    cum = torch.zeros(tree.num_leaves + 1, leaf_rows.shape[1], dtype=leaf_rows.dtype, device=leaf_rows.device)
    cum[1:] = leaf_rows[order].cumsum(0)
    return cum[end] - cum[start]


def _class_blocks(tree: Hierarchy, counts: torch.Tensor):
    """Yield, for blocks of classes, the points of each class under every node: (classes in block, num_nodes).

    Classes are independent in the per-class sums, so blocks bound the memory at any K x C.
    """
    order, start, end = (t.to(counts.device) for t in tree.spans())
    by_class = counts[order].T.contiguous()  # (C, K): leaves in the dendrogram's order
    step = max(1, _BLOCK // tree.num_nodes)
    cum = torch.zeros(min(step, by_class.shape[0]), tree.num_leaves + 1, dtype=counts.dtype, device=counts.device)
    for c in range(0, by_class.shape[0], step):
        block = by_class[c : c + step]
        rows = cum[: block.shape[0]]
        torch.cumsum(block, 1, out=rows[:, 1:])
        yield rows[:, end] - rows[:, start]


def _heights(tree: Hierarchy, device: torch.device) -> torch.Tensor:
    """rho of every node: (leaves under it - 1) / (K - 1); 0 when K = 1."""
    sizes = torch.tensor(tree.sizes(), dtype=torch.float64, device=device)
    return (sizes - 1) / max(tree.num_leaves - 1, 1)
