"""Slow, obvious reference implementations written straight from ../shared/SPEC.md.

NumPy float64, Python loops, no cleverness: these are what the package is checked against.
"""

from __future__ import annotations

import itertools
import math

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


# ------------------------------------------------------------------- L2H with exact decisions, SPEC §1 "Saturated"


def _exact_values():
    """Values v = n - D with n an exact Fraction and D >= 0 an mpmath number (the doubt part)."""
    import fractions

    import mpmath

    mpf = mpmath.mpf

    def frac_mpf(x):
        return mpf(x.numerator) / x.denominator

    def scale(v, c):  # c * v for an exact Fraction c > 0
        return (v[0] * c, v[1] * c.numerator / c.denominator)

    def diff(a, b):  # a - b, to the working precision
        return frac_mpf(a[0] - b[0]) - (a[1] - b[1])

    def to_float(v):
        return float(frac_mpf(v[0]) - v[1])

    def margin(a, b):
        """Relative gap between a and b: against the doubt parts when the exact parts agree, else against |v|."""
        if a[0] == b[0]:
            if a[1] == b[1]:
                # both exactly zero (groups that receive nothing) compare exactly in any arithmetic
                return math.inf if a[0] == 0 and a[1] == 0 else 0.0
            return float(abs(a[1] - b[1]) / max(a[1], b[1]))
        scale_ = max(abs(frac_mpf(a[0]) - a[1]), abs(frac_mpf(b[0]) - b[1]))
        return float(abs(diff(a, b)) / scale_)

    return fractions.Fraction, mpmath, scale, diff, to_float, margin


def reference_l2h_exact(logits, aggregation: str = "cluster_mean", weights=None, dps: int = 50):
    """SPEC §1 with every decision taken on high-precision values (mpmath, `dps` digits, no underflow).

    The logits are taken as the exact binary values of their float64 representation. Confidences are
    carried as doubts d = 1 - g (and 1 - q), each a sum of exp(l_c - l_max) terms, so that values such as
    5 - 1e-40 and 5 - 2e-40 are told apart. Returns (merges, margins, evidence):
    - merges: list of (node, node), the selected group's node first (scipy numbering, merge i is node K+i);
    - margins: relative gaps of every decision taken (selection, partner, all-pairs pair, runner-up
      partner) and, per step, of the closest point-level decision (a reassigned point's best vs second-best
      unmasked logit relative to the size of the numbers involved); a test treats an input whose smallest
      margin is below its threshold as a near-tie that floating point may legitimately break either way;
    - evidence: dict of per-merge lists, keys as `Hierarchy.evidence` (score, partner_value, runner_up,
      runner_up_value, points, mass); for "all_pairs" the score is NaN and the runner-up is the selected
      group's second-best partner.
    """
    Fraction, mpmath, scale, diff, to_float, margin = _exact_values()
    L = np.asarray(logits, dtype=np.float64)
    if aggregation not in ("cluster_mean", "sum", "group_mean", "all_pairs"):
        raise ValueError(f"unknown aggregation {aggregation!r}")
    N, K = L.shape
    w = np.ones(N) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (N,) or not (w >= 0).all() or not np.isfinite(w).all():
        raise ValueError("weights must be N finite non-negative numbers")
    keep = w > 0  # a point of weight 0 is absent
    L, w = L[keep], w[keep]
    N = len(L)
    if N == 0 and K > 1:
        raise ValueError("weights: every point has weight 0, there is nothing to select")
    merges, margins = [], []
    evidence = {k: [] for k in ("score", "partner_value", "runner_up", "runner_up_value", "points", "mass")}
    with mpmath.workdps(dps):
        mpf = mpmath.mpf
        wf = [Fraction(float(x)) for x in w]  # exact weights
        wm = [mpf(float(x)) for x in w]
        a = L.argmax(axis=1)  # exact comparisons of the float64 values, first index on ties
        # E[x][c] = exp(l_c - l_max): no underflow in mpmath, so every doubt keeps its relative precision
        E = [[mpmath.exp(mpf(float(L[x, c])) - mpf(float(L[x, a[x]]))) for c in range(K)] for x in range(N)]
        doubt = [mpmath.fsum(E[x][c] for c in range(K) if c != a[x]) / mpmath.fsum(E[x]) for x in range(N)]
        members = [[x for x in range(N) if a[x] == c] for c in range(K)]
        W = [sum((wf[x] for x in members[c]), Fraction(0)) for c in range(K)]  # weighted counts
        Dsum = [mpmath.fsum(wm[x] * doubt[x] for x in members[c]) for c in range(K)]

        def score(G):
            nonempty = [c for c in G if W[c] > 0]
            if aggregation == "cluster_mean":  # sum over clusters of (1 - mean doubt)
                return (Fraction(len(nonempty)), mpmath.fsum(Dsum[c] * W[c].denominator / W[c].numerator for c in nonempty))
            WG = sum((W[c] for c in nonempty), Fraction(0))
            DG = mpmath.fsum(Dsum[c] for c in nonempty)
            if aggregation == "sum":
                return (WG, DG)
            return (Fraction(1), DG * WG.denominator / WG.numerator)  # group_mean

        def reassign(i, groups):
            """Partner values A(H) = (n_H - U_H)/|H| for every j != i, and the masses n_H - U_H."""
            G = set(groups[i])
            free = [c for c in range(K) if c not in G]
            owner = {c: j for j, H in enumerate(groups) for c in H}
            n = {j: Fraction(0) for j in range(len(groups)) if j != i}
            U = {j: [] for j in n}
            closest = math.inf
            for c0 in groups[i]:
                for x in members[c0]:
                    row = L[x]
                    r = max(free, key=lambda c: (row[c], -c))  # first index on ties
                    if len(free) > 1:
                        l2 = max(row[c] for c in free if c != r)
                        if row[r] != l2:  # exact ties follow the index rule exactly; near ones may flip
                            size = max(1.0, abs(row[r]), abs(l2), row[a[x]] - l2)
                            closest = min(closest, float((row[r] - l2) / size))
                    others = mpmath.fsum(E[x][c] for c in free if c != r)
                    n[owner[r]] += wf[x]
                    U[owner[r]].append(wm[x] * others / (others + E[x][r]))
            if closest < math.inf:
                margins.append(closest)
            mass = {j: (n[j], mpmath.fsum(U[j])) for j in n}
            return {j: scale(mass[j], Fraction(1, len(groups[j]))) for j in n}, mass

        def best_of(values, higher, order):
            """Winner and runner-up keys of `values` (v = n - D), ties broken by `order` (earliest first)."""
            import functools

            def cmp(p, q):
                d = diff(values[p], values[q])
                if d != 0:
                    return (-1 if d > 0 else 1) if higher else (-1 if d < 0 else 1)
                return -1 if order(p) < order(q) else (1 if order(p) > order(q) else 0)

            ranked = sorted(values, key=functools.cmp_to_key(cmp))
            return ranked

        groups = [(c,) for c in range(K)]
        ids = list(range(K))
        for step in range(K - 1):
            with_points = [i for i, G in enumerate(groups) if any(W[c] > 0 for c in G)]
            if aggregation == "all_pairs":
                pair_values, per_i = {}, {}
                for i in with_points:
                    values, mass = reassign(i, groups)
                    per_i[i] = (values, mass)
                    pair_values.update({(i, j): v for j, v in values.items()})
                ranked = best_of(pair_values, True, lambda ij: ij)
                i, j = ranked[0]
                if len(ranked) > 1:
                    margins.append(margin(pair_values[ranked[0]], pair_values[ranked[1]]))
                values, mass = per_i[i]
                evidence["score"].append(math.nan)
            else:
                scores = {i: score(groups[i]) for i in with_points}
                ranked_i = best_of(scores, False, lambda k: k)
                i = ranked_i[0]
                if len(ranked_i) > 1:
                    margins.append(margin(scores[i], scores[ranked_i[1]]))
                values, mass = reassign(i, groups)
                evidence["score"].append(to_float(scores[i]))
            ranked = best_of(values, True, lambda k: k)
            if aggregation != "all_pairs":
                j = ranked[0]
            runners = [k for k in ranked if k != j]
            if aggregation != "all_pairs" and runners:
                margins.append(margin(values[j], values[runners[0]]))
            if len(runners) > 1:  # which group is the runner-up is a decision too
                margins.append(margin(values[runners[0]], values[runners[1]]))
            evidence["partner_value"].append(to_float(values[j]))
            evidence["runner_up"].append(ids[runners[0]] if runners else -1)
            evidence["runner_up_value"].append(to_float(values[runners[0]]) if runners else math.nan)
            evidence["points"].append(float(sum((W[c] for c in groups[i]), Fraction(0))))
            evidence["mass"].append(to_float(mass[j]))
            merges.append((ids[i], ids[j]))
            new = groups[i] + groups[j]
            for k in sorted((i, j), reverse=True):
                del groups[k], ids[k]
            groups.append(new)
            ids.append(K + step)
    return merges, margins, evidence
