"""What the tree metrics share: two ways to get (tree, K×C counts), DDP-safe."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn
from torchmetrics.utilities.data import dim_zero_cat

from ..engine import AGGREGATIONS, l2h
from ..hierarchy import Hierarchy, _as_int
from .functional.contingency import _check_tree, _tensor, contingency_table


class _TreeMetric(Metric):
    """Base of the hierarchy metrics. Two modes:

    - **tree from the data** (``hierarchy=None``): ``update(logits, target)`` keeps the logits and targets
      (``"cat"`` states); ``compute()`` gathers them from every process, runs `l2h` once and scores that tree.
      The tree is then available as ``.hierarchy``.
    - **fixed tree** (``hierarchy=tree``): ``update(preds, target)`` only adds to the K×C contingency table
      (a ``"sum"`` state), so memory does not grow with the data.
    """

    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        hierarchy: Hierarchy | None = None,
        *,
        num_classes: int | None = None,
        target_hierarchy: Hierarchy | None = None,
        aggregation: str = "cluster_mean",
        max_samples: int | None = None,
        store_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_tree(hierarchy, "hierarchy", optional=True)
        _check_tree(target_hierarchy, "target_hierarchy", optional=True)
        if not isinstance(aggregation, str) or aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1):
            raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
        if store_dtype is not None and (not isinstance(store_dtype, torch.dtype) or not store_dtype.is_floating_point):
            raise ValueError(
                f"store_dtype must be a floating-point torch.dtype such as torch.float16, got {store_dtype!r}"
            )
        if num_classes is not None:
            num_classes = _as_int(num_classes, "num_classes")
        if target_hierarchy is not None:
            if num_classes is not None and num_classes != target_hierarchy.num_leaves:
                raise ValueError(
                    f"num_classes={num_classes} but target_hierarchy has {target_hierarchy.num_leaves} leaves"
                )
            num_classes = target_hierarchy.num_leaves
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.hierarchy = hierarchy
        self.target_hierarchy = target_hierarchy
        self.aggregation = aggregation
        self.max_samples = max_samples
        self.store_dtype = store_dtype or torch.float32
        self.fixed_tree = hierarchy is not None
        if self.fixed_tree:
            self.num_classes = num_classes or hierarchy.num_leaves
            zeros = torch.zeros(hierarchy.num_leaves, self.num_classes, dtype=torch.long)
            self.add_state("counts", zeros, dist_reduce_fx="sum")
        else:
            self.num_classes = num_classes
            # Flattened 1-D states: a process that saw no data contributes an empty (0,) tensor of the same
            # dtype and number of dimensions, which the gather accepts (torchmetrics' own placeholder does not).
            self.add_state("logits", [], dist_reduce_fx="cat")
            self.add_state("target", [], dist_reduce_fx="cat")
            self.add_state("num_clusters", torch.tensor(0), dist_reduce_fx="max")
            self._add_placeholders()

    def _add_placeholders(self) -> None:
        self._K: int | None = None
        self._seen = 0
        self.logits.append(torch.empty(0, dtype=self.store_dtype, device=self.device))
        self.target.append(torch.empty(0, dtype=torch.long, device=self.device))

    def reset(self) -> None:
        super().reset()
        if not self.fixed_tree:
            self._add_placeholders()

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: logits (N, K) and class ids (N,) (fixed-tree mode also takes cluster ids (N,)).

        Class ids must be an integer (or bool) tensor, as in torchmetrics; float targets are refused.
        """
        if self.fixed_tree:
            self.counts += contingency_table(preds, target, self.hierarchy.num_leaves, self.num_classes).to(self.counts)
            return
        preds, target = _tensor(preds, "preds"), _tensor(target, "target")
        if preds.ndim != 2 or not preds.is_floating_point():
            raise ValueError(
                f"update needs logits (N, K) of a floating dtype to learn the tree from, got shape "
                f"{tuple(preds.shape)} and dtype {preds.dtype} (pass hierarchy= to score cluster ids on a fixed tree)"
            )
        if preds.shape[1] == 0:
            raise ValueError("preds: the logits have no columns (K = 0)")
        if target.ndim != 1 or target.numel() != preds.shape[0]:
            raise ValueError(f"target must be class ids (N,) for the {preds.shape[0]} rows of logits, got shape {tuple(target.shape)}")
        if target.is_floating_point() or target.is_complex():
            raise ValueError(f"target must hold integer class ids, got dtype {target.dtype}")
        if target.numel():
            low, high = int(target.min()), int(target.max())
            if low < 0:
                raise ValueError(f"target has negative class ids (min {low})")
            if self.num_classes is not None and high >= self.num_classes:
                raise ValueError(f"target has class ids outside 0..{self.num_classes - 1} (max {high})")
        bad = int((~preds.isfinite()).any(1).sum())
        if bad:
            raise ValueError(f"preds: the logits have NaN or infinite entries in {bad} of {preds.shape[0]} row(s)")
        K = preds.shape[1]
        if self._K is not None and K != self._K:
            raise ValueError(f"the number of clusters changed between batches: {self._K} before, {K} now")
        if self.max_samples is not None:
            room = self.max_samples - self._seen
            if room < preds.shape[0]:
                rank_zero_warn(f"max_samples={self.max_samples} reached: the metric keeps the first {self.max_samples} points")
                preds, target = preds[: max(room, 0)], target[: max(room, 0)]
        # always a compact copy: a kept view of a slice would hold its whole base tensor alive
        kept = preds.detach().to(self.store_dtype, copy=True).contiguous()
        if preds.dtype != self.store_dtype:
            over = int((~kept.isfinite()).any(1).sum())
            if over:
                raise ValueError(
                    f"preds: {over} row(s) of logits exceed the range of store_dtype={self.store_dtype} "
                    f"(largest {torch.finfo(self.store_dtype).max:g}) and would be stored as infinities; "
                    "pass a wider store_dtype such as torch.float32"
                )
        if self._K is None:
            self._K = K
            self.num_clusters.fill_(K)
        self._seen += preds.shape[0]
        self.logits.append(kept.reshape(-1))
        self.target.append(target.detach().long().clone())

    def _tree_and_counts(self) -> tuple[Hierarchy, torch.Tensor]:
        if self.fixed_tree:
            if not self.counts.sum() > 0:
                raise ValueError("no points to score: call update(preds, target) with at least one point before compute()")
            return self.hierarchy, self.counts
        K = int(self.num_clusters)
        if K == 0:
            raise ValueError("no logits to learn a tree from: call update(logits, target) before compute()")
        logits = dim_zero_cat(self.logits).view(-1, K)
        if logits.shape[0] == 0:
            raise ValueError("no points to learn a tree from: every update(logits, target) so far had zero rows")
        target = dim_zero_cat(self.target)
        num_classes = self.num_classes or int(target.max()) + 1
        self.hierarchy = l2h(logits, self.aggregation)
        return self.hierarchy, contingency_table(logits.argmax(1), target, K, num_classes)
