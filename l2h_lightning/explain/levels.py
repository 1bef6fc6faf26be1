"""Suggested levels: the numbers of groups at which a learned tree is most natural to read.

Cutting the tree into n groups applies its first K - n merges (`Hierarchy.cut`). A cut is natural when the
last merge applied was well supported and the next one, which starts joining the n groups, is not. The
support of merge i (selected group G, partner H) is its **lift**

    raw_i = A_i * (K - |G|) / points_i,

the partner's mean received probability per cluster (A, ``partner_value``) relative to an even share of one unit
per reassigned point over the K - |G| clusters the points could move to. It is about 1 or below when the points
have no preference (and at the root, whose partner is every other cluster), and about q (K - |G|) / |H| when all
of them go to the partner with probability q. A merge decided by a handful of points can have any raw lift, so
it is shrunk towards 1 as if c more points without a preference had been reassigned:

    lift_i = (points_i * raw_i + c) / (points_i + c),   c = median over merges of points_i / |G_i|

(c: the points of a typical cluster, so the rule does not depend on the scale of the weights). The score of the
cut into n groups (2 <= n <= K-1) is

    drop(n) = log lift_{K-n-1} - log lift_{K-n},

and `suggest_cuts` returns the n with the largest positive drops (above a rounding-noise threshold).
``method="raw_lift"`` uses raw_i, ``method="partner_value"`` the raw A_i (the direct reading of "where the partner
values drop"); docs/insight.md compares them. Cost: O(K).
"""

from __future__ import annotations

import math

import torch

from ..hierarchy import Hierarchy

METHODS = ("lift", "raw_lift", "partner_value")


def cut_scores(tree: Hierarchy, *, method: str = "lift") -> torch.Tensor:
    """(K+1,) float64 tensor: entry n is drop(n), the score of cutting `tree` into n groups (NaN for n < 2, n = K).

    Example:
        >>> from l2h_lightning import Hierarchy
        >>> ev = {"partner_value": [9.0, 9.0, 1.0], "points": [10.0, 10.0, 20.0]}
        >>> tree = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], num_leaves=4, evidence=ev)
        >>> [round(float(x), 3) for x in cut_scores(tree)[2:4]]  # 2 groups: {0, 1} and {2, 3}
        [1.531, 0.0]
    """
    values = _support(tree, method)
    K = tree.num_leaves
    out = torch.full((K + 1,), math.nan, dtype=torch.float64)
    if K > 2:
        logs = values.clamp_min(torch.finfo(torch.float64).tiny).log()
        logs[values.isnan()] = math.nan
        j = torch.arange(1, K - 1)  # the first merge not applied, for n = K - j groups
        out[K - j] = logs[j - 1] - logs[j]
    return out


def suggest_cuts(
    tree: Hierarchy, *, max_suggestions: int = 3, method: str = "lift", min_drop: float = 1e-6
) -> list[int]:
    """Numbers of groups at which `tree` is most natural to read, best first (see the module doc).

    Only cuts whose drop exceeds `min_drop` are suggested (the default only ignores rounding noise in equal
    lifts); equal drops: fewer groups first. Needs ``tree.evidence`` (trees from `l2h` carry it).

    Example:
        >>> from l2h_lightning import Hierarchy
        >>> ev = {"partner_value": [9.0, 9.0, 1.0], "points": [10.0, 10.0, 20.0]}
        >>> tree = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], num_leaves=4, evidence=ev)
        >>> suggest_cuts(tree)
        [2]
    """
    if isinstance(max_suggestions, bool) or int(max_suggestions) != max_suggestions or max_suggestions < 0:
        raise ValueError(f"max_suggestions must be a non-negative integer, got {max_suggestions!r}")
    if not min_drop >= 0:
        raise ValueError(f"min_drop must be a non-negative number, got {min_drop!r}")
    scores = cut_scores(tree, method=method).tolist()
    ranked = sorted((n for n, s in enumerate(scores) if s > min_drop), key=lambda n: (-scores[n], n))
    return ranked[: int(max_suggestions)]


def _support(tree: Hierarchy, method: str) -> torch.Tensor:
    """Per merge, the evidence value whose drops mark the cuts."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(tree, Hierarchy) or not tree.is_binary:
        raise ValueError("tree must be a binary Hierarchy (for example from l2h)")
    ev = tree.evidence or {}
    missing = [k for k in ("partner_value", "points") if k not in ev]
    if missing:
        raise ValueError(
            f"tree.evidence lacks {missing}: suggest_cuts reads the merge evidence that trees from l2h carry"
        )
    A = ev["partner_value"].double()
    if method == "partner_value":
        return A
    K = tree.num_leaves
    sizes = torch.tensor(tree.sizes(), dtype=torch.float64)
    selected = sizes[tree.merges[:, 0]]
    points = ev["points"].double()
    has = points > 0
    raw = torch.where(has, A * (K - selected) / points, torch.full_like(A, math.nan))
    if method == "raw_lift" or not bool(has.any()):
        return raw
    c = float(torch.quantile(points[has] / selected[has], 0.5))  # median; of an even count, the middle two's mean
    return torch.where(has, (points * raw + c) / (points + c), raw)
