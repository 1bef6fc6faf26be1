"""Level scores: cut the learned tree to each ground-truth level's number of groups, score NMI, ARI and ACC."""

from __future__ import annotations

import torch

from ...hierarchy import Hierarchy
from .contingency import _check_tree, _counts


def _nmi(table: torch.Tensor) -> torch.Tensor:
    """Normalised mutual information (arithmetic mean of the entropies, as scikit-learn) from a contingency table."""
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if table.shape[0] == table.shape[1] == 1 or table.numel() == 0:
        return torch.tensor(1.0, dtype=torch.float64, device=table.device)
    p = table / table.sum()
    rows, cols = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
    nz = p > 0
    mi = (p[nz] * (p[nz].log() - (rows * cols).expand_as(p)[nz].log())).sum()
    h_rows, h_cols = -(rows * rows.log()).sum(), -(cols * cols.log()).sum()
    denom = (h_rows + h_cols) / 2
    return (mi / denom).clamp(min=0) if denom > 0 else torch.zeros((), dtype=torch.float64, device=table.device)


def _ari(table: torch.Tensor) -> torch.Tensor:
    """Adjusted Rand index from a contingency table (scikit-learn's formula and special cases)."""
    n = table.sum()

    def comb2(x: torch.Tensor) -> torch.Tensor:
        return (x * (x - 1) / 2).sum()

    index, a, b = comb2(table), comb2(table.sum(1)), comb2(table.sum(0))
    total = n * (n - 1) / 2
    expected = a * b / total if total > 0 else torch.zeros_like(n)
    maximum = (a + b) / 2
    if maximum == expected:  # both partitions trivial (one group, or all singletons): a perfect match
        return torch.tensor(1.0, dtype=torch.float64, device=table.device)
    return (index - expected) / (maximum - expected)


def _acc(table: torch.Tensor) -> torch.Tensor:
    """Accuracy under the best one-to-one matching of predicted groups to true groups (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(table.cpu().numpy(), maximize=True)
    return table[torch.as_tensor(rows), torch.as_tensor(cols)].sum() / table.sum().clamp(min=1)


def _level_scores_compute(hierarchy: Hierarchy, counts: torch.Tensor, target_hierarchy: Hierarchy) -> dict:
    if target_hierarchy.levels is None:
        raise ValueError("target_hierarchy has no levels: build it with Hierarchy.from_levels(maps)")
    if not counts.sum() > 0:
        raise ValueError("level scores need at least one point: the counts sum to 0")
    out = {}
    for i, level in enumerate(target_hierarchy.levels, start=1):
        true_group = torch.unique(level, return_inverse=True)[1].to(counts.device)
        n_groups = int(true_group.max()) + 1
        pred_group = hierarchy.cut(min(n_groups, hierarchy.num_leaves)).to(counts.device)
        table = torch.zeros(int(pred_group.max()) + 1, n_groups, dtype=torch.float64, device=counts.device)
        table.index_put_((pred_group[:, None].expand_as(counts), true_group[None, :].expand_as(counts)), counts, accumulate=True)
        out[f"level{i}/nmi"], out[f"level{i}/ari"], out[f"level{i}/acc"] = _nmi(table), _ari(table), _acc(table)
    return out


def level_scores(
    hierarchy: Hierarchy,
    preds: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    target_hierarchy: Hierarchy | None = None,
    *,
    counts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """NMI, ARI and ACC of the learned tree cut to each ground-truth level's number of groups.

    Level i (1 = the finest coarse level) is ``target_hierarchy.levels[i - 1]``, a map from class to group. The
    learned tree (over K clusters) is cut to as many groups (at most K), each point goes to its cluster's group, and
    that grouping is scored against the points' true groups.

    Returns ``{"level1/nmi": ..., "level1/ari": ..., "level1/acc": ..., "level2/nmi": ...}`` (0-d tensors).

    Example:
        >>> import torch
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], num_leaves=4)
        >>> truth = Hierarchy.from_levels([[0, 0, 1, 1]])
        >>> scores = level_scores(tree, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), truth)
        >>> {k: round(float(v), 3) for k, v in scores.items()}
        {'level1/nmi': 1.0, 'level1/ari': 1.0, 'level1/acc': 1.0}
    """
    if target_hierarchy is None:
        raise ValueError("level_scores needs target_hierarchy (from Hierarchy.from_levels)")
    _check_tree(target_hierarchy, "target_hierarchy")
    counts = _counts(hierarchy, preds, target, counts, target_hierarchy)
    return _level_scores_compute(hierarchy, counts, target_hierarchy)


