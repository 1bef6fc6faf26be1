"""Leaf purity: the size-weighted mean of each cluster's majority-class fraction."""

from __future__ import annotations

import torch

from .contingency import contingency_table


def _leaf_purity_compute(counts: torch.Tensor) -> torch.Tensor:
    return counts.double().amax(1).sum() / counts.sum().clamp(min=1)


def leaf_purity(
    preds: torch.Tensor | None = None, target: torch.Tensor | None = None, *, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of points in their cluster's majority class. Higher is better.

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
        preds, target = torch.as_tensor(preds), torch.as_tensor(target)
        num_clusters = preds.shape[1] if preds.ndim == 2 else int(preds.max()) + 1 if preds.numel() else 1
        counts = contingency_table(preds, target, num_clusters, int(target.max()) + 1 if target.numel() else 1)
    return _leaf_purity_compute(torch.as_tensor(counts))
