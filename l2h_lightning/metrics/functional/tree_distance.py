"""Tree distance: how differently two trees over the same leaves group them (used for drift between epochs).

Computed exactly in integers, in O(K log K), without any K x K matrix. With s(i, j) the number of leaves under
LCA(i, j), rho = (s - 1) / (K - 1), and |x - y| = x + y - 2 min(x, y):

    sum over pairs |s_a - s_b| = sum s_a + sum s_b - 2 sum_{t=0}^{K-1} #{pairs with s_a > t and s_b > t}.

The pairs with s_a <= t are those inside one cluster of tree a cut at size t; the pairs with s_a <= t and s_b <= t
are those inside one cell of both cuts. Growing t activates nodes in order of size; the cells' leaf counts are kept
in dicts, merged small into large.
"""

from __future__ import annotations

import torch

from ...hierarchy import Hierarchy
from .contingency import _check_tree


def tree_distance(a: Hierarchy, b: Hierarchy) -> torch.Tensor:
    """Mean over leaf pairs of |rho_a - rho_b| (docs/metrics.md): 0 for the same shape, at most 1.

    Example:
        >>> from l2h_lightning import Hierarchy
        >>> x = Hierarchy.from_merges([[0, 1], [2, 3]], num_leaves=3)
        >>> y = Hierarchy.from_merges([[1, 2], [0, 3]], num_leaves=3)
        >>> float(tree_distance(x, x)), round(float(tree_distance(x, y)), 4)
        (0.0, 0.3333)
    """
    _check_tree(a, "a")
    _check_tree(b, "b")
    if a.num_leaves != b.num_leaves:
        raise ValueError(f"the trees have different leaves: {a.num_leaves} and {b.num_leaves}")
    K = a.num_leaves
    if K < 2:
        return torch.zeros((), dtype=torch.float64)
    pairs = K * (K - 1) // 2
    return torch.tensor(_sum_abs_size_difference(a, b) / (K - 1) / pairs, dtype=torch.float64)


def _sum_abs_size_difference(a: Hierarchy, b: Hierarchy) -> int:
    """sum over leaf pairs of |s_a(i, j) - s_b(i, j)|, exactly."""
    K = a.num_leaves
    pairs = K * (K - 1) // 2
    events = []  # (size, which tree, node)
    sums = []
    for which, tree in enumerate((a, b)):
        sizes = tree.sizes()
        total = 0
        for i, ch in enumerate(tree.children):
            v = K + i
            joined = (sizes[v] ** 2 - sum(sizes[c] ** 2 for c in ch)) // 2  # pairs whose LCA is v
            total += sizes[v] * joined
            events.append((sizes[v], which, v, joined))
        sums.append(total)
    events.sort()
    # clusters are named by a representative leaf; rows[w][r] = {other tree's representative: shared leaves}
    rep = [list(range(K)) + [0] * len(a.children), list(range(K)) + [0] * len(b.children)]
    rows = [[{i: 1} for i in range(K)], [{i: 1} for i in range(K)]]
    children = (a.children, b.children)
    inside = [0, 0]  # pairs inside one cluster of each tree's cut
    inside_both = 0  # pairs inside one cell of both cuts
    above_min = 0  # sum over t of #{pairs with s_a > t and s_b > t}
    t = 0
    for size, which, v, joined in events:
        above_min += (size - t) * (pairs - inside[0] - inside[1] + inside_both)  # t .. size-1 had these values
        t = size
        mine, theirs = rows[which], rows[1 - which]
        reps = [rep[which][c] for c in children[which][v - K]]
        keep = max(reps, key=lambda r: len(mine[r]))
        row = mine[keep]
        for r in reps:
            if r == keep:
                continue
            for other, count in mine[r].items():
                before = row.get(other, 0)
                inside_both += before * count
                row[other] = before + count
                col = theirs[other]
                del col[r]
                col[keep] = col.get(keep, 0) + count
            mine[r] = {}
        rep[which][v] = keep
        inside[which] += joined
    above_min += (K - t) * (pairs - inside[0] - inside[1] + inside_both)
    return sums[0] + sums[1] - 2 * above_min
