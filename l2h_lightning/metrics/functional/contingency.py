"""The K×C contingency table n[k, c] = #points predicted k with class c: every metric's sufficient statistic."""

from __future__ import annotations

import torch

from ...hierarchy import Hierarchy


def contingency_table(
    preds: torch.Tensor, target: torch.Tensor, num_clusters: int, num_classes: int
) -> torch.Tensor:
    """(num_clusters, num_classes) int64 counts from cluster ids (N,) or logits (N, K) and class ids (N,).

    Example:
        >>> contingency_table(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0]), 2, 2).tolist()
        [[0, 2], [1, 0]]
    """
    preds, target = torch.as_tensor(preds), torch.as_tensor(target)
    if preds.ndim == 2:
        if preds.shape[1] != num_clusters:
            raise ValueError(f"preds are logits over {preds.shape[1]} clusters, but the tree has {num_clusters} leaves")
        preds = preds.argmax(1)
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


def _counts(
    hierarchy: Hierarchy,
    preds: torch.Tensor | None,
    target: torch.Tensor | None,
    counts: torch.Tensor | None,
    target_hierarchy: Hierarchy | None = None,
) -> torch.Tensor:
    """The contingency table, from (preds, target) or as given, checked against both trees; float64."""
    K = hierarchy.num_leaves
    num_classes = target_hierarchy.num_leaves if target_hierarchy is not None else None
    if counts is None:
        if preds is None or target is None:
            raise ValueError("pass preds and target, or counts=")
        target = torch.as_tensor(target)
        if num_classes is None:
            num_classes = int(target.max()) + 1 if target.numel() else 1
        counts = contingency_table(preds, target, K, num_classes)
    counts = torch.as_tensor(counts)
    if counts.ndim != 2 or counts.shape[0] != K:
        raise ValueError(f"counts must be a ({K}, C) table for a tree over {K} leaves, got shape {tuple(counts.shape)}")
    if num_classes is not None and counts.shape[1] != num_classes:
        raise ValueError(f"counts has {counts.shape[1]} classes, the target hierarchy has {num_classes}")
    if (counts < 0).any():
        raise ValueError("counts must not be negative")
    return counts.double()


def _node_counts(tree: Hierarchy, leaf_rows: torch.Tensor) -> torch.Tensor:
    """Sum of `leaf_rows` (K, D) under every node: (num_nodes, D), in O(num_nodes × D) via the leaf order."""
    order, start, end = (t.to(leaf_rows.device) for t in tree.spans())
    cum = torch.zeros(tree.num_leaves + 1, leaf_rows.shape[1], dtype=leaf_rows.dtype, device=leaf_rows.device)
    cum[1:] = leaf_rows[order].cumsum(0)
    return cum[end] - cum[start]


def _children_sum(tree: Hierarchy, node_rows: torch.Tensor) -> torch.Tensor:
    """For every node, the sum of its children's rows (zero for leaves)."""
    parents = tree.parents.to(node_rows.device)[:-1]  # every node but the root (the last) has a parent
    return torch.zeros_like(node_rows).index_add_(0, parents, node_rows[:-1])


def _heights(tree: Hierarchy, device: torch.device) -> torch.Tensor:
    """rho of every node: (leaves under it - 1) / (K - 1); 0 when K = 1."""
    sizes = torch.tensor(tree.sizes(), dtype=torch.float64, device=device)
    return (sizes - 1) / max(tree.num_leaves - 1, 1)
