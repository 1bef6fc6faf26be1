"""Leaf purity: the size-weighted mean of each cluster's majority-class fraction."""

from __future__ import annotations

import torch

from .contingency import _check_counts, _tensor, contingency_table


def _leaf_purity_compute(counts: torch.Tensor) -> torch.Tensor:
    return counts.double().amax(1).sum() / counts.sum().clamp(min=1)


def leaf_purity(
    preds: torch.Tensor | None = None, target: torch.Tensor | None = None, *, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of points in their cluster's majority class. Higher is better.

    Needs no tree. A table without points, or with fractional, negative or NaN counts, is refused (ValueError).

    Args:
        preds: cluster ids (N,) or logits (N, K); target: class ids (N,); or counts: a (K, C) table.

    Example:
        >>> import torch
        >>> float(leaf_purity(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1])))
        0.75
    """
    if counts is None:
        if preds is None or target is None:
            raise ValueError("pass preds and target, or counts=")
        preds, target = _tensor(preds, "preds"), _tensor(target, "target")
        num_clusters = preds.shape[1] if preds.ndim == 2 else _id_count(preds)
        counts = contingency_table(preds, target, max(num_clusters, 1), _id_count(target))
    elif preds is not None or target is not None:
        raise ValueError("pass preds and target, or counts=, not both")
    return _leaf_purity_compute(_check_counts(counts))


def _id_count(ids: torch.Tensor) -> int:
    """1 + the largest id (1 when there is none); contingency_table then names bad ids."""
    if ids.numel() == 0 or ids.is_floating_point() or ids.is_complex() or ids.ndim != 1:
        return 1
    return max(int(ids.max()) + 1, 1)
