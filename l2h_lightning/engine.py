"""L2H ("From Logits to Hierarchies", ICML 2025): a binary tree over K clusters from (N, K) logits alone.

Start with one group per cluster, then K-1 times:

1. **select** the group with the lowest score among the groups that hold points (ties: earliest group);
2. **reassign** its points with a softmax over the clusters outside it (a masked softmax);
3. **partner**: the group whose clusters receive the most of that probability, per cluster (ties: earliest);
4. **merge** the two into a new group at the end of the list.

Groups live in creation order, so "earliest" is "lowest node id" (scipy numbering: merge i makes node K+i).

Exact where softmax saturates: confidences are carried as doubts 1 - g and 1 - q, so a score is "n - D" with D
kept apart from n, and two groups whose scores round to the same float are still ordered by their doubts.
Every decision is a comparison of sums over points (weighted when `weights` is given), so rows spread over
processes only add an all-reduce of those sums; the loop is the same.

Why it is fast (torch on the logits' device; on CPU, NumPy for row argmaxes and host decisions):

- Scores are sums of per-cluster numbers, kept on the host in a heap; only per-cluster totals cross, once.
- Reassignments read rows of one pass over the logits (`masked_softmax.py` says how), and a point is touched only
  when its own group is selected: not at its cluster's first selection (that pass leaves each point's answers
  with only its own cluster masked; they are summed by the cluster they go to, once a run) nor at the last merge
  when one cluster is left outside (every point goes there, with q = 1). When a group only absorbed a
  never-predicted class, its points' last answers (kept in the group's own order) are updated by that one column.
- One host sync per step: the partner's id and a few evidence numbers. Everything runs in inference mode (no
  autograd bookkeeping in the thousands of small calls). On CPU the steps run on one thread (with other processes
  on the cores, multi-threaded small operations stall on each other); the one pass over the logits is shared by
  torch's threads, each taking the next chunk when it is done.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .hierarchy import Hierarchy
from .masked_softmax import Answers, Points

AGGREGATIONS = ("cluster_mean", "sum", "group_mean", "all_pairs")
EVIDENCE = ("score", "partner_value", "runner_up", "runner_up_value", "points", "mass")


def l2h(
    logits: torch.Tensor,
    aggregation: str = "cluster_mean",
    *,
    weights: torch.Tensor | None = None,
    inplace: bool = False,
    process_group: object | None = None,
) -> Hierarchy:
    """Build the L2H hierarchy over the K columns of `logits` (N, K).

    Args:
        logits: (N, K) floating-point tensor (or array) on any device. float16/bfloat16 are read in float32 a
            chunk at a time (never a full float32 copy); float32 and float64 are computed in their own precision.
        aggregation: the group score used to select whom to merge next: ``"cluster_mean"`` (the paper's
            default: sum over the group's clusters of their mean confidence), ``"sum"`` (sum of the group's
            confidences), ``"group_mean"`` (mean confidence of the group's points), or ``"all_pairs"`` (merge
            the pair with the highest partner score over all pairs; slower, no gain in the paper).
        weights: optional (N,) non-negative point weights: counts become sums of weights, means weighted means.
            Integer weights equal repeating rows; weight 0 removes a point.
        inplace: let the engine overwrite `logits` with what it needs (float32/float64 only), so that its
            memory beyond the logits stays small. Do not use the logits afterwards (nor after an error about
            their entries: they are checked while they are read, once).
        process_group: a ``torch.distributed`` group: every process passes its own rows (possibly none) and
            every process returns the same tree, the tree of all rows together. Per merge: at most one all-reduce
            of 2 x (2K - 1) numbers.

    Returns:
        A binary `Hierarchy`; ``merges[i]`` = (selected group's node, partner's node) of step i, heights 1..K-1,
        and ``evidence``: per merge the selected group's score, the partner's value, the runner-up partner and
        its value, the (weighted) number of points reassigned and the probability mass they moved to the partner.

    A cluster that is never anyone's argmax is never selected, but can be a partner.

    Example:
        >>> import torch
        >>> from l2h_lightning import l2h
        >>> logits = torch.tensor([[4.0, 3.0, 0.0], [3.0, 4.0, 0.0], [0.0, 1.0, 4.0]])
        >>> l2h(logits).merges.tolist()
        [[0, 1], [2, 3]]
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    sums = _Sums(process_group)
    with _engine_mode() as threads:
        logits, points, weights = _prepared(logits, weights, inplace, False, sums, threads)
        merges = [] if points is None else _run(points, aggregation, sums, weights)
    return _tree(merges, logits.shape[1])


def l2h_replicates(
    logits: torch.Tensor, weights, aggregation: str = "cluster_mean", *, process_group: object | None = None
) -> Iterator[Hierarchy]:
    """One tree per weight vector in `weights` (an iterable of (N,) tensors), sharing one pass over the logits.

    Each tree equals ``l2h(logits, aggregation, weights=w, process_group=process_group)`` (None: unweighted); the
    pass that prepares the logits (argmax, doubts, v) is done once, so bootstrap replicates cost the merge loop
    alone, and less when they form groups an earlier tree formed: such a group's reassignment is reused (kept for
    up to half the logits' size in all).

    Example:
        >>> import torch
        >>> logits = torch.randn(100, 5)
        >>> trees = l2h_replicates(logits, [torch.ones(100), torch.randint(0, 3, (100,))])
        >>> next(trees) == l2h(logits)
        True
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    sums = _Sums(process_group)
    with _engine_mode() as threads:
        logits, points, _ = _prepared(logits, None, False, True, sums, threads)
    for w in weights:
        with _engine_mode():
            _, w = sums.agree(logits, *_checked_weights(w, logits, sums.distributed))
            merges = _run(points, aggregation, sums, w) if points is not None else []
        yield _tree(merges, logits.shape[1])


def _run(points: Points, aggregation: str, sums: _Sums, weights: torch.Tensor | None) -> list[tuple]:
    """Merges of one run: (selected node, partner node, *evidence) per step."""
    points.restart(weights)
    run = _all_pairs if aggregation == "all_pairs" else _select_and_partner
    return run(points, aggregation, sums)


def _tree(merges: list[tuple], K: int) -> Hierarchy:
    """The `Hierarchy` of `_run`'s merges, with their evidence (made outside the engine's inference mode)."""
    if K == 1:
        return Hierarchy(1, [])
    cols = list(zip(*merges))  # (K - 1 >= 1 merges)
    evidence = {
        name: torch.tensor(col, dtype=torch.long if name == "runner_up" else torch.float64).reshape(K - 1)
        for name, col in zip(EVIDENCE, cols[2:])
    }
    return Hierarchy.from_merges(list(zip(cols[0], cols[1])), K, evidence=evidence)


def _prepared(logits, weights, inplace: bool, reusable: bool, sums: _Sums, threads: int,
              ) -> tuple[torch.Tensor, Points | None, torch.Tensor | None]:
    """(logits, their first pass or None for K = 1, weights), checked; an error is raised on every process.

    The entries are checked by the first pass itself (NaN and infinities show in its row maxima and minima), so
    the logits are read once: with `inplace`, logits found bad have already been overwritten.
    """
    logits, weights, error = _checked(logits, weights, inplace, sums.distributed)
    points = None
    if not error:
        if logits.shape[1] > 1:
            points = Points(logits, inplace, reusable=reusable, threads=threads)
            bad = points.bad_rows
        else:
            bad = int((~logits.isfinite()).sum())
        if bad:
            error = f"logits has NaN or infinite entries in {bad} of its {logits.shape[0]} rows"
    logits, weights = sums.agree(logits, weights, error)
    return logits, points, weights


def _checked(logits, weights, inplace: bool, distributed: bool,
             ) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
    """The validated inputs (but for their entries: see `_prepared`), or (None, None, why not)."""
    logits = torch.as_tensor(logits).detach()
    if logits.ndim != 2:
        return None, None, f"logits must be 2-D (N points, K clusters), got shape {tuple(logits.shape)}"
    if not logits.is_floating_point():
        return None, None, f"logits must be a floating-point tensor, got dtype {logits.dtype}"
    if logits.shape[1] == 0:
        return None, None, "logits has no columns (K = 0): there are no clusters"
    if logits.shape[0] == 0 and not distributed:
        return None, None, "logits has no rows (N = 0): there are no points to build a hierarchy from"
    if not isinstance(inplace, bool):
        return None, None, f"inplace must be True or False, got {inplace!r}"
    weights, error = _checked_weights(weights, logits, distributed)
    return (None, None, error) if error else (logits, weights, "")


def _checked_weights(weights, logits: torch.Tensor, distributed: bool = False) -> tuple[torch.Tensor | None, str]:
    if weights is None:
        return None, ""
    weights = torch.as_tensor(weights, device=logits.device).detach()
    if weights.shape != (logits.shape[0],):
        return None, f"weights must have shape (N,) = ({logits.shape[0]},), got {tuple(weights.shape)}"
    if weights.dtype == torch.bool or weights.is_complex():
        return None, f"weights must be real numbers, got dtype {weights.dtype}"
    weights = weights.double()
    if not bool(weights.isfinite().all()) or bool((weights < 0).any()):
        return None, "weights must be finite and non-negative"
    if not distributed and not bool(weights.any()):  # (under a process group: all processes together, see agree)
        return None, "weights are all 0: no point is left to build a hierarchy from"
    return weights, ""


class _Sums:
    """Sums over points: local, or all-reduced over a process group (the only difference between the two runs)."""

    def __init__(self, group: object | None) -> None:
        self.group = group
        self.distributed = group is not None
        if self.distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError("process_group was given, but torch.distributed is not initialised")

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            torch.distributed.all_reduce(t, group=self.group)
        return t

    def agree(self, logits, weights, error: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raise the same error on every process, or return the checked inputs; all processes agree on K."""
        if not self.distributed:
            if error:
                raise ValueError(error)
            return logits, weights
        mine = (error, None if logits is None else logits.shape[1], None if logits is None else logits.shape[0],
                weights is not None, 0.0 if weights is None else float(weights.sum()))
        every = [None] * torch.distributed.get_world_size(self.group)
        torch.distributed.all_gather_object(every, mine, group=self.group)
        errors = [f"process {rank}: {e[0]}" for rank, e in enumerate(every) if e[0]]
        if errors:
            raise ValueError("; ".join(errors))
        ks = [e[1] for e in every]
        if len(set(ks)) > 1:
            raise ValueError(f"the processes disagree on the number of clusters K: {ks} (process by process)")
        if len({e[3] for e in every}) > 1:
            raise ValueError("weights were given on some processes and not on others")
        if weights is not None and sum(e[4] for e in every) == 0:
            raise ValueError("weights are all 0 on every process: no point is left to build a hierarchy from")
        if sum(e[2] for e in every) == 0:
            raise ValueError("logits has no rows (N = 0) on any process: there are no points to build a hierarchy from")
        return logits, weights


@contextmanager
def _engine_mode():
    """Inside the engine torch runs in inference mode, on one CPU thread (its GPU path is unaffected); yields the
    threads it had. Nothing made inside may leave it (inference tensors cannot be changed outside): trees are built
    after.

    The engine's work is thousands of small operations. Inference mode skips autograd's bookkeeping in each of them
    (7-27% of the engine's time at 2,000 x 1,000, by benchmarks/bench_ab.py). On cores shared with data-loader
    workers or other jobs, every multi-threaded one waits for a descheduled thread: on a 2-core machine shared with
    other jobs, 2 threads took 3-4x the time of 1 (planted 50,000 x 1,000: 4.5 s against 1.3 s). The one big pass
    over the logits is spread over that many threads by `masked_softmax._over_chunks` instead, which does not wait
    on a slow thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield threads
    finally:
        torch.set_num_threads(threads)


def _mass(sums: _Sums, r: torch.Tensor, w: torch.Tensor | None, wd: torch.Tensor, slot: torch.Tensor | None,
          size: int) -> torch.Tensor:
    """(2, size): per slot, the weight landing there and its Σ w (1 - q), summed over processes, of points (or sums
    of points) going to clusters `r` with weights `w` (None: 1 each) and `wd` = w (1 - q); `slot` None: the
    cluster's own."""
    if r.device.type == "cpu":  # in NumPy: this runs once a merge, and each torch call costs several NumPy ones
        at = r.numpy() if slot is None else slot.numpy()[r.numpy()]
        mass = np.empty((2, size))  # (float64: bincount gives int64 for no points, even with weights)
        mass[0], mass[1] = np.bincount(at, None if w is None else w.numpy(), size), np.bincount(at, wd.numpy(), size)
        return sums(torch.from_numpy(mass))
    at = r if slot is None else slot.index_select(0, r)
    mass = torch.zeros(2, size, dtype=torch.float64, device=r.device)
    mass[0].index_add_(0, at, torch.ones_like(wd) if w is None else w)
    mass[1].index_add_(0, at, wd)
    return sums(mass)


def _point_mass(points: Points, sums: _Sums, answers: Answers, p: torch.Tensor, slot: torch.Tensor | None,
                size: int) -> torch.Tensor:
    """`_mass` of points `p` with their `answers`."""
    if not points.weighted:
        return _mass(sums, answers.r, None, answers.doubt, slot, size)
    w = points.weights[p]
    return _mass(sums, answers.r, w, answers.doubt * w, slot, size)


def _partners(mass: torch.Tensor, width: np.ndarray, live: np.ndarray, G: int) -> tuple[int, float, int, float, float]:
    """(partner, its value, runner-up or -1, its value or NaN, mass moved to the partner), decided on the host.

    The 2 x (2K - 1) sums come to the host once (on CPU that is no copy). Only groups that receive points are
    compared (they are live, not G, and their values are > 0); the others all have value 0. Highest value first,
    ties by the smallest doubt part (exact where values round equal), then the earliest group.
    """
    landed, doubt = mass.cpu().numpy()
    at = np.flatnonzero(landed)
    value, spread = (landed[at] - doubt[at]) / width[at], doubt[at] / width[at]
    order = np.lexsort((spread, -value))  # (stable: equal keys stay in slot order)
    H, a_h = int(at[order[0]]), value[order[0]]
    if at.size > 1:
        return H, a_h, int(at[order[1]]), value[order[1]], landed[H] - doubt[H]
    others = np.flatnonzero(live)  # no other group receives anything: the earliest of them, at value 0
    others = others[(others != G) & (others != H)]
    if not others.size:
        return H, a_h, -1, math.nan, landed[H] - doubt[H]
    return H, a_h, int(others[0]), 0.0, landed[H] - doubt[H]


def _cluster_stats(points: Points, sums: _Sums) -> list[list[float]]:
    """Per cluster: [weight of its points, Σ w·doubt]: the only per-point numbers selection needs."""
    stats = torch.zeros(2, points.K, dtype=torch.float64, device=points.assign.device)
    stats[0].index_add_(0, points.assign, points.weights)  # (bincount would give an empty process int64 counts)
    stats[1].index_add_(0, points.assign, points.weights * points.rows.doubt)
    if not points.reusable:  # (a single run reads it here only)
        points.rows.doubt = None
    return sums(stats).T.tolist()


def _sorted(p: torch.Tensor) -> torch.Tensor:
    """Points `p` in increasing order, in place on CPU: their rows are then read in memory order. (A group's points
    are a few sorted runs, its parts': a stable sort merges them in about linear time.)"""
    if p.device.type == "cpu":
        p.numpy().sort(kind="stable")
        return p
    return p.sort().values


def _cluster_points(points: Points) -> dict[int, torch.Tensor]:
    """Cluster -> its points, in index order (weight 0: absent, unless kept for reuse, where they add 0)."""
    order = torch.argsort(points.assign, stable=True)
    kept = (points.weights[order] > 0) | points.reusable
    counts = torch.bincount(points.assign[order][kept], minlength=points.K).tolist()
    # copies, not views: a view would keep all points' indices alive until the last cluster is merged
    return {c: part.clone() for c, part in enumerate(order[kept].split(counts))}


def _select_and_partner(points: Points, aggregation: str, sums: _Sums) -> list[tuple]:
    K, device = points.K, points.assign.device
    size = 2 * K - 1
    # per group, additive under merging: (weight n, Σ w·doubt, non-empty clusters k, Σ mean doubts)
    stats = {c: (n, d, float(n > 0), d / n if n > 0 else 0.0) for c, (n, d) in enumerate(_cluster_stats(points, sums))}

    def key(node: int) -> tuple[float, float]:
        """(score S, then -doubt part): S = k - Σ mean doubts | n - Σ doubts | 1 - mean doubt."""
        n, d, k, means = stats[node]
        if aggregation == "cluster_mean":
            return k - means, -means
        if aggregation == "sum":
            return n - d, -d
        return 1.0 - d / n, -d / n

    heap = [(*key(c), c) for c in range(K) if stats[c][0] > 0]
    alone = with_points = len(heap)  # clusters with points (still alone in their group)
    heapq.heapify(heap)
    members = dict(enumerate(torch.arange(K, device=device).split(1)))
    group_points = _cluster_points(points)
    node_of = torch.arange(K, device=device)  # cluster -> node of its live group
    width = np.ones(size)
    live = np.zeros(size, dtype=bool)
    live[:K] = True
    pending: dict[int, tuple] = {}  # node that just absorbed a never-predicted class -> (that class, last answers)
    offsets, targets, first = points.first_sums()
    merges = []  # (G, H, *evidence) per step
    for new in range(K, size):
        G = heapq.heappop(heap)[2]
        while G not in members:  # merged away as somebody's partner
            G = heapq.heappop(heap)[2]
        p = group_points[G]
        updated = G in pending
        holds_all = stats[G][2] == with_points  # (then no point can move to G's clusters again)
        if width[G] == K - 1:  # the last merge, one cluster left outside G: every point goes there, with q = 1
            (last,) = np.flatnonzero(live & (np.arange(size) != G))
            mass, answers = torch.zeros(2, size, dtype=torch.float64), None
            mass[0, last] = stats[G][0]  # (a sum over all processes already)
        elif G < K:  # a cluster alone, at its first selection
            at = slice(offsets[G], offsets[G + 1])
            mass, answers = _mass(sums, targets[at], first[0, at], first[1, at], node_of, size), None
        elif updated:
            added, answers = pending.pop(G)
            answers = points.update(p, members[G], added, answers)
            if holds_all:
                points.rows.narrow(members[G])
        else:
            # a group holding every point can only absorb classes without points from now on: its answers will be
            # updated, so their sums are made in float64 (a float32 one is redone once it halves)
            p, answers = points.group_answers(_sorted(p), members[G], exact=holds_all)
            group_points[G] = p
        if answers is not None:  # (G holding every point: every other group is a cluster without points, alone)
            mass = _point_mass(points, sums, answers, p, None if holds_all else node_of, size)
        H, a_h, R, a_r, moved = _partners(mass, width, live, G)
        merges.append((G, H, key(G)[0], a_h, R, a_r, stats[G][0], moved))

        # a never-predicted partner (a single cluster): the same points, one more column masked (where it holds
        # points of weight 0, kept for reuse, they are not the same points), unless this was the last merge
        if (stats[H][0] == 0 and not group_points[H].numel() and new < size - 1
                and points.worth_updating(p.numel())):
            if G < K:  # (its points' first answers, in its own order)
                answers = points.first_answers(p)
            elif not updated and points.cache is not None:  # (cached answers are kept as they are)
                answers = answers.clone()
            pending[new] = (H, answers)
        pending.pop(H, None)  # (a group that absorbed a never-predicted class, now somebody's partner)
        members[new] = torch.cat((members.pop(G), members.pop(H)))
        node_of.index_fill_(0, members[new], new)
        width[new] = float(members[new].numel())
        live[G] = live[H] = False
        live[new] = True
        joined = group_points.pop(H)
        group_points[new] = torch.cat((group_points.pop(G), joined)) if joined.numel() else group_points.pop(G)
        lone = (G < K) + (H < K and stats[H][0] > 0)
        if lone:
            alone -= lone
            if not alone:  # no cluster with points is alone any more
                points.first_done()
        stats[new] = tuple(x + y for x, y in zip(stats.pop(G), stats.pop(H)))
        heapq.heappush(heap, (*key(new), new))
    return merges


def _all_pairs(points: Points, _: str, sums: _Sums) -> list[tuple]:
    """Merge the pair (G, H) with the highest A_G(H) over all pairs (docs/algorithm.md, other scores).

    Each live group sits in a slot (the merged group takes G's slot). ``mass[:, i, j]`` is the weight and doubt
    that slot i's points send to slot j's clusters; a group's reassignment does not change when *other* groups
    merge, so only the new group's row is computed afresh and the partner's column is added into G's.
    """
    K, device = points.K, points.assign.device
    stats = _cluster_stats(points, sums)
    has_points = torch.tensor([n > 0 for n, _ in stats], device=device)
    slot_of = torch.arange(K, device=device)  # cluster -> slot of its live group
    node_at = list(range(K))  # slot -> node id
    width = torch.ones(K, dtype=torch.float64, device=device)
    alive = torch.ones(K, dtype=torch.bool, device=device)  # slots that hold a group
    offsets, targets, first = points.first_sums()  # every point, with only its own cluster masked
    points.first_done()
    own = torch.repeat_interleave(torch.arange(K, device=device), torch.tensor(np.diff(offsets), device=device))
    mass = torch.zeros(2, K, K, dtype=torch.float64, device=device)
    mass[:, own, targets] = first
    sums(mass)
    members = dict(enumerate(torch.arange(K, device=device).split(1)))
    group_points = _cluster_points(points)
    weight = [n for n, _ in stats]
    merges = []  # (G, H, *evidence) per step
    for new in range(K, 2 * K - 1):
        value = torch.where(has_points[:, None] & alive, (mass[0] - mass[1]) / width, -math.inf)
        value.diagonal().fill_(-math.inf)
        doubt = mass[1] / width
        best = value.max()
        i, j = min((d, node_at[i], node_at[j], i, j) for (i, j), d in zip(
            (value == best).nonzero().tolist(), doubt[value == best].tolist()))[3:]
        G, H = node_at[i], node_at[j]
        row = value[i].clone()
        row[j] = -math.inf
        row, doubts = row.cpu().numpy(), doubt[i].cpu().numpy()
        a_r = float(row.max())  # the runner-up: ties by doubt, then earliest node (slots are not in node order)
        R = -1 if a_r == -math.inf else min((doubts[c], node_at[c]) for c in np.flatnonzero(row == a_r))[1]
        merges.append((G, H, math.nan, float(best), R, a_r if R >= 0 else math.nan, weight[i],
                         float(mass[0, i, j] - mass[1, i, j])))

        mass[:, :, i] += mass[:, :, j]
        mass[:, :, j] = 0.0
        width[i] += width[j]
        width[j] = math.inf
        alive[j] = False
        has_points[i] |= has_points[j]
        has_points[j] = False
        weight[i] += weight[j]
        node_at[i], node_at[j] = new, -1
        members[new] = torch.cat((members.pop(G), members.pop(H)))
        slot_of[members[new]] = i
        group_points[new] = torch.cat((group_points.pop(G), group_points.pop(H)))
        q = group_points[new]
        answers = points.reassign(q, members[new])
        mass[:, i] = _point_mass(points, sums, answers, q, slot_of, K)
        mass[:, j] = 0.0
    return merges
