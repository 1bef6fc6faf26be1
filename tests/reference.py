"""Slow, obvious reference implementations written straight from ../shared/SPEC.md.

NumPy float64, Python loops, no cleverness: these are what the package is checked against.
"""

from __future__ import annotations

import itertools

import numpy as np


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def reference_l2h(logits, aggregation: str = "cluster_mean"):
    """SPEC §1, literally. Returns (merges as list of (node, node), decision margins).

    Node ids follow scipy: leaves 0..K-1, merge i creates node K+i. The margins are the relative gaps
    between the winning and the runner-up value of every decision taken, so that tests can tell a
    tie-free input (all margins clearly positive) from a near-tie that float rounding may break either way.
    """
    L = np.asarray(logits, dtype=np.float64)
    N, K = L.shape
    P = _softmax(L)
    a = P.argmax(axis=1)
    g = P.max(axis=1)
    m = {c: g[a == c].mean() for c in range(K) if (a == c).any()}

    def score(G):
        pts = np.isin(a, G)
        if aggregation == "cluster_mean":
            return sum(m[c] for c in G if c in m)
        if aggregation == "sum":
            return g[pts].sum()
        if aggregation == "group_mean":
            return g[pts].mean()
        raise ValueError(aggregation)

    def partner_values(i, groups):
        """A(H) for every group index j != i, with groups[i] as the selected group."""
        G = groups[i]
        X = L[np.isin(a, G)].copy()
        X[:, list(G)] = -np.inf
        r = X.argmax(axis=1)
        mx = X.max(axis=1)
        if X.shape[1] - len(G) > 1:  # how clearly each point's new cluster beats its runner-up
            top2 = np.sort(X, axis=1)[:, -2:]
            margins.append(float((1 - np.exp(top2[:, 0] - top2[:, 1])).min(initial=np.inf)))
        lse = mx + np.log(np.exp(X - mx[:, None]).sum(axis=1))
        q = np.exp(mx - lse)
        return {j: q[np.isin(r, H)].sum() / len(H) for j, H in enumerate(groups) if j != i}

    def margin(values, best, higher):
        others = [v for k, v in values.items() if k != best]
        if not others:
            return np.inf
        runner = max(others) if higher else min(others)
        return abs(values[best] - runner) / max(abs(values[best]), abs(runner), 1e-300)

    groups = [(c,) for c in range(K)]
    ids = list(range(K))
    merges, margins = [], []
    for step in range(K - 1):
        with_points = [i for i, G in enumerate(groups) if np.isin(a, G).any()]
        if aggregation == "all_pairs":
            values = {}
            for i in with_points:
                for j, v in partner_values(i, groups).items():
                    values[(i, j)] = v
            best = max(values, key=lambda ij: (values[ij], -ij[0], -ij[1]))
            margins.append(margin(values, best, higher=True))
            i, j = best
        else:
            scores = {i: score(groups[i]) for i in with_points}
            i = min(scores, key=lambda k: (scores[k], k))
            margins.append(margin(scores, i, higher=False))
            values = partner_values(i, groups)
            j = max(values, key=lambda k: (values[k], -k))
            margins.append(margin(values, j, higher=True))
        merges.append((ids[i], ids[j]))
        new = groups[i] + groups[j]
        for k in sorted((i, j), reverse=True):
            del groups[k], ids[k]
        groups.append(new)
        ids.append(K + step)
    return merges, margins


# ---------------------------------------------------------------------------------------------- metrics, SPEC §3


def _leaf_sets(num_leaves, children):
    sets = [{i} for i in range(num_leaves)]
    for ch in children:
        sets.append(set().union(*(sets[c] for c in ch)))
    return sets


def reference_rho(num_leaves, children):
    """rho(i, j) = (leaves under the smallest node holding i and j - 1) / (K - 1)."""
    sets = _leaf_sets(num_leaves, children)
    rho = np.zeros((num_leaves, num_leaves))
    for i in range(num_leaves):
        for j in range(num_leaves):
            if i != j:
                rho[i, j] = (min(len(s) for s in sets if i in s and j in s) - 1) / (num_leaves - 1)
    return rho


def reference_dendrogram_purity(num_leaves, children, preds, target):
    """Mean over same-class point pairs of the class purity of the smallest subtree holding both clusters."""
    sets = _leaf_sets(num_leaves, children)
    preds, target = np.asarray(preds), np.asarray(target)
    purities = []
    for i, j in itertools.combinations(range(len(preds)), 2):
        if target[i] != target[j]:
            continue
        node = min((s for s in sets if preds[i] in s and preds[j] in s), key=len)
        under = np.isin(preds, list(node))
        purities.append((target[under] == target[i]).sum() / under.sum())
    return float(np.mean(purities)) if purities else float("nan")


def reference_lca_height_distance(rho_T, rho_H, preds, target):
    """Mean over all point pairs of |rho_T(pred_i, pred_j) - rho_H(y_i, y_j)|."""
    return float(
        np.mean(
            [abs(rho_T[preds[i], preds[j]] - rho_H[target[i], target[j]]) for i, j in itertools.combinations(range(len(preds)), 2)]
        )
    )


def reference_leaf_purity(preds, target):
    preds, target = np.asarray(preds), np.asarray(target)
    return sum(np.bincount(target[preds == k]).max() for k in np.unique(preds)) / len(preds)


def reference_tree_distance(rho_a, rho_b):
    K = len(rho_a)
    return float(np.mean([abs(rho_a[i, j] - rho_b[i, j]) for i, j in itertools.combinations(range(K), 2)])) if K > 1 else 0.0
