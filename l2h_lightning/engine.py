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
- One pass stores ``v = exp(l - m2)`` (m2: the row's second-largest logit; the row's own argmax is always masked)
  in a new tensor or in place of the logits. A reassignment is then a masked max and a masked sum over the
  selected group's rows of v (sorted: read in memory order), in cache-sized chunks through one reused buffer.
  Entries too small for exp keep their log value (as a negative number), so the rows whose masked sum underflows
  are redone in the log domain (from the logits, in their dtype, relative to the largest term of the sum), and
  re-shifted where their masked maximum fell far below the shift, so that their next visits are fast.
- A point is touched only when its own group is selected, and not at its cluster's first selection (the one pass
  leaves each point's answers with only its own cluster masked; they are summed by the cluster they go to, once a
  run) nor at the last merge when one cluster is left outside (every point goes there, with q = 1). When a group
  only absorbed a never-predicted class, its points' last answers (kept in the group's own order) are updated by
  that one column, and points whose argmax it was take the next one from their own row (one masked max; its value
  leaves the sum). Once one group holds every point, its columns are dropped from v's rows (in place), and the
  space they leave holds the free columns contiguously: the column an absorbed class subtracts is then one
  contiguous read.
- Bootstrap replicates (`l2h_replicates`) share the pass, and a group that an earlier replicate also formed
  reuses that replicate's answers (weight-0 points stay in their groups, adding 0).
- One host sync per step: the partner's id and a few evidence numbers. Everything runs in inference mode (no
  autograd bookkeeping in the thousands of small calls). On CPU the steps run on one thread (with other processes
  on the cores, multi-threaded small operations stall on each other); the one pass over the logits is shared by
  torch's threads, each taking the next chunk when it is done.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from .hierarchy import Hierarchy

AGGREGATIONS = ("cluster_mean", "sum", "group_mean", "all_pairs")
# float64 exp is fast down to here; nearer its smallest normal (e^-708), below it and at -inf it is 12-280x slower
# (float32's: fast down to -87; benchmarks/bench_slow_paths.py)
_LOG_FLOOR = -700.0
_EXP_FLOOR = float(torch.tensor(_LOG_FLOOR, dtype=torch.float64).exp())  # as exp gives it
# the smallest chunk, in entries (1 MiB of float32; see _chunk_rows)
_MIN_CHUNK = 1 << 18
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


def _run(points: _Points, aggregation: str, sums: _Sums, weights: torch.Tensor | None) -> list[tuple]:
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
              ) -> tuple[torch.Tensor, _Points | None, torch.Tensor | None]:
    """(logits, their first pass or None for K = 1, weights), checked; an error is raised on every process.

    The entries are checked by the first pass itself (NaN and infinities show in its row maxima and minima), so
    the logits are read once: with `inplace`, logits found bad have already been overwritten.
    """
    logits, weights, error = _checked(logits, weights, inplace, sums.distributed)
    points = None
    if not error:
        if logits.shape[1] > 1:
            points = _Points(logits, inplace, reusable=reusable, threads=threads)
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


def _encode(z: torch.Tensor, e: torch.Tensor, low: float) -> torch.Tensor:
    """v, in place of z = l - m2: exp(z) (= e) where that is a normal number, else the negative z + low.

    z >= -low: v = e > 0. z < -low: v = (z + low) + e, which is negative (float steps of z near -low are far larger
    than e = exp(-low)); the log value comes back as v - low. Masked columns (z = -inf) stay -inf.
    """
    return z.add_(low).clamp_(max=0.0).add_(e)


def _chunk_rows(logits: torch.Tensor, workers: int = 1) -> int:
    """Rows per chunk: cache-sized on CPU (larger on CUDA), and at most 1/32 of the logits for all `workers`
    together, so that the few chunk-sized buffers stay a small fraction of them; but at least `_MIN_CHUNK` entries:
    for logits under 2^23 entries that is more than 1/32 of them (a few MiB in all), and their loops take a few
    steps instead of hundreds."""
    N, K = logits.shape
    elements = min(1 << 26 if logits.is_cuda else 1 << 20, max(_MIN_CHUNK, N * K // (32 * workers)))
    return max(1, min(N, elements // K))


@contextmanager
def _engine_mode():
    """Inside the engine torch runs in inference mode, on one CPU thread (its GPU path is unaffected); yields the
    threads it had. Nothing made inside may leave it (inference tensors cannot be changed outside): trees are built
    after.

    The engine's work is thousands of small operations. Inference mode skips autograd's bookkeeping in each of them
    (7-27% of the engine's time at 2,000 x 1,000, by benchmarks/bench_ab.py). On cores shared with data-loader
    workers or other jobs, every multi-threaded one waits for a descheduled thread: on a 2-core machine shared with
    other jobs, 2 threads took 3-4x the time of 1 (planted 50,000 x 1,000: 4.5 s against 1.3 s). The one big pass
    over the logits is spread over that many threads by `_over_chunks` instead, which does not wait on a slow
    thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield threads
    finally:
        torch.set_num_threads(threads)


def _over_chunks(fn, logits: torch.Tensor, threads: int) -> list:
    """[fn(start, n) for each chunk of rows of `logits`], on CPU shared by up to `threads` threads, each taking the
    next chunk when it is done.

    Not a static split: a thread that shares its core with another process does fewer chunks, and nobody waits for
    it (torch's own threads made the first pass 2-3x slower with one of two cores busy). At most as many threads as
    give each chunks of 2^18 entries: while a thread hands out a chunk it holds the GIL, and small ones would queue.
    """
    N = logits.shape[0]
    workers = 1 if logits.device.type != "cpu" else max(1, min(threads, logits.numel() // (32 << 18)))
    step = _chunk_rows(logits, workers)
    starts = range(0, N, step)
    if workers <= 1 or len(starts) <= 1:
        return [fn(s, min(step, N - s)) for s in starts]
    inference = torch.is_inference_mode_enabled()  # (thread-local: Lightning's validation runs under it)

    def run(start: int):
        with torch.inference_mode(inference):
            return fn(start, min(step, N - start))

    with ThreadPoolExecutor(min(workers, len(starts)), initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(run, starts))


class _Answers:
    """Masked-softmax answers of a list of points, in its order: argmax r, v there (top), the masked sum without it
    (rest), the doubt 1 - q = rest / (rest + top), and the floor below which rest, lowered by subtraction, has
    lost the precision decisions need."""

    FIELDS = ("r", "top", "rest", "doubt", "floor")

    def __init__(self, r: torch.Tensor, top: torch.Tensor, rest: torch.Tensor) -> None:
        self.r, self.top, self.rest = r, top, rest
        self.floor = None  # (set by `_Points.reassign` or `update`)
        self.doubt = torch.add(rest, top)
        torch.div(rest, self.doubt, out=self.doubt)  # (in place: a large group's)

    def clone(self) -> _Answers:
        """A copy that can be updated without changing these answers (kept for reuse)."""
        out = _Answers.__new__(_Answers)
        for name in self.FIELDS:
            value = getattr(self, name)
            setattr(out, name, None if value is None else value.clone())
        return out

    def put(self, idx: torch.Tensor, new: _Answers) -> None:
        """Replace the answers at positions `idx` by `new` (answers of those points)."""
        for name in self.FIELDS:
            getattr(self, name)[idx] = getattr(new, name)


class _Points:
    """Masked-softmax reassignment (docs/algorithm.md) of any set of points, and its update by one more column.

    A reassignment of a point gives r (its masked argmax) and u = Σ_{c outside the mask, c ≠ r} p_c / p_r, so
    that q = 1 / (1 + u) and 1 - q = u / (1 + u) keep their precision when q rounds to 1.
    """

    def __init__(self, logits: torch.Tensor, inplace: bool, reusable: bool = False, threads: int = 1) -> None:
        N, self.K = logits.shape
        device = logits.device
        self.dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        info = torch.finfo(self.dtype)
        self.eps = info.eps
        # the relative precision a sum updated by subtraction must keep: near-ties below it may go either way
        self.precision = 2.0**-40 if self.dtype == torch.float64 else 2.0**-22
        self.low = 700.0 if self.dtype == torch.float64 else 80.0  # exp(-low) is still a normal number
        self.min_sum = self.K * math.exp(-self.low) / self.eps  # below this, entries dropped from v may matter
        self.exp_low = float(torch.tensor(-self.low, dtype=self.dtype).exp())  # exp(-low) as exp gives it
        half = logits.dtype != self.dtype
        self.v = None if half else (logits if inplace else torch.empty_like(logits))
        self.logits = None if self.v is logits else logits  # the exact values, where they survive: for the log domain
        self.assign = torch.empty(N, dtype=torch.long, device=device)
        # (only read with the exact values: v holds what else needs it)
        self.m2 = None if self.logits is None else torch.empty(N, dtype=self.dtype, device=device)
        self.doubt = torch.empty(N, dtype=torch.float64, device=device)
        # each point's answers with its own cluster alone masked, for its cluster's first selection: the column of
        # its second-largest logit (the shift: v = 1 there) and the masked sum without it (12 bytes a point)
        self.first_r = torch.empty(N, dtype=torch.int32, device=device)
        self.first_rest = torch.empty(N, dtype=torch.float64, device=device)
        chunks = _over_chunks(lambda start, n: self._first_pass(logits, start, n), logits, threads)
        self.signed = any(signed for signed, _ in chunks)  # whether v has negative entries (reads clamp them to 0)
        self.bad_rows = sum(bad for _, bad in chunks)  # rows with NaN or infinite entries (then nothing else is done)
        self.reusable = reusable  # for several runs: rows are never re-shifted (see _log_domain)
        # and a group's answers are kept for the next run that forms the same group, within half the
        # logits' size (36 bytes a point: its index, argmax, v there, masked sum and doubt)
        self.cache: dict[frozenset, tuple[torch.Tensor, _Answers]] | None = {} if reusable else None
        self.cache_room = logits.numel() * logits.element_size() // (2 * 36)
        self.buf = torch.empty(_chunk_rows(logits), self.K, dtype=self.dtype, device=device)
        # the columns v's rows still hold (all, until `narrow` drops those no point can move to any more), and
        # then the same values column by column
        self.width, self.stored, self.position, self.by_column = self.K, None, None, None
        self.buf64 = None  # for float64 row sums and the log domain from v, when first needed
        self.rows64 = max(1, self.buf.numel() // (4 * self.K))  # float64 rows at a time: half of buf's bytes
        if self.K > 2 and not self.bad_rows:  # (K = 2: nothing is left beside the second, u = 0)
            # sums too small for v (saturated rows), all at once, as `reassign` would redo them one cluster at a time
            small = (self.first_rest < self.min_sum).nonzero().squeeze(1)
            for s in range(0, small.numel(), self.rows64):
                idx = small[s : s + self.rows64]
                r, self.first_rest[idx], _ = self._log_domain(idx, None)
                self.first_r[idx] = r.int()

    def restart(self, weights: torch.Tensor | None) -> None:
        """Weigh the points by `weights` (None: 1 each) for the next run."""
        N, device = self.assign.shape[0], self.assign.device
        # (unweighted: one 1 seen N times, not N float64 ones)
        self.weights = torch.ones(1, dtype=torch.float64, device=device).expand(N) if weights is None else weights
        self.weighted = weights is not None

    def _first_pass(self, logits: torch.Tensor, start: int, n: int) -> tuple[bool, int]:
        """Argmax, doubt, second maximum and first answers of rows start..start+n; v of those rows; whether it has
        negative entries, and how many of the rows have NaN or infinite entries (their maximum or minimum is)."""
        if self.v is None:  # half precision: a float32 copy of this chunk only
            x = logits[start : start + n].to(self.dtype)
        elif self.v is logits:  # in place
            x = logits[start : start + n]
        else:
            x = self.v[start : start + n].copy_(logits[start : start + n])
        top, a = _first_max(x)
        least = x.amin(1)
        bad = int((~(top.isfinite() & least.isfinite())).sum())
        x.scatter_(1, a[:, None], -math.inf)
        m2, a2 = _first_max(x)
        x.sub_(m2[:, None])
        # the common case: every entry within exp's range of its row's shift, so v is exp of x, taken in place
        # (the own column's -inf gives 0); else clamped, as exp would go subnormal (and slow) for nothing
        in_range = bool((least - m2).min() >= -self.low)
        e = x.exp_() if in_range else x.clamp(min=-self.low).exp_().scatter_(1, a[:, None], 0.0)
        rest = e.scatter_(1, a2[:, None], 0.0).sum(1).double()  # Σ_{c≠a, a2} exp(l_c - m2)
        e.scatter_(1, a2[:, None], 1.0)
        # log of Σ_{c≠a} exp(l_c - l_a), and the doubt 1 - g = that / (1 + that), in float64 and the log domain
        lead = (m2.double() - top.double()) + rest.log1p()
        self.doubt[start : start + n] = (lead - torch.log1p(lead.exp())).exp()
        self.assign[start : start + n] = a
        self.first_r[start : start + n], self.first_rest[start : start + n] = a2, rest
        if self.m2 is not None:
            self.m2[start : start + n] = m2
        if self.v is not None and not in_range:
            # the own column is 0 (always masked); entries too small for exp are negative (see _encode)
            _encode(x, e, self.low).scatter_(1, a[:, None], 0.0)
            return bool(x.amin() < 0), bad
        return False, bad

    # --------------------------------------------------------------------------------------------- rows of v
    def _exp_rows(self, p: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """exp(l - m2) for rows `p` (0 for the point's own argmax and for entries too small to matter)."""
        if self.v is not None:
            x = torch.index_select(self.v, 0, p, out=out)
            return x.clamp_(min=0.0) if self.signed else x
        # clamped above too: masked columns may lie above a re-shifted row's maximum (they are zeroed anyway)
        out.copy_(torch.index_select(self.logits, 0, p)).sub_(self.m2[p, None]).clamp_(-self.low, 0.0).exp_()
        return out.scatter_(1, self.assign[p, None], 0.0)

    def _log_rows(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, shift): at most `rows64` rows `p` in the log domain, -inf at the point's own argmax, z + shift = l - m2.

        From the exact logits, their values (shift -m2) in the dtype, in the chunk buffer; else from v, l - m2
        (shift None) in the float64 buffer: float32's log of v would round them."""
        if self.logits is not None:
            z = self.buf.view(-1)[: p.numel() * self.width].view(-1, self.width)
            if self.stored is None and self.logits.dtype == z.dtype:
                torch.index_select(self.logits, 0, p, out=z)
            else:
                rows = self.logits.index_select(0, p)
                z.copy_(rows if self.stored is None else rows.index_select(1, self.stored))
            shift = -self.m2[p].double()
        else:
            z, shift = self._buf64(p.numel()), None
            if self.v.dtype == torch.float64:
                torch.index_select(self.v, 0, p, out=z)
            else:
                z.copy_(self.v.index_select(0, p))
            # (log of 0 or of a negative number is 15x slower than of a normal one: clamped first, and taken
            # before z changes)
            torch.where(z > 0, z.clamp(min=self.exp_low).log_(), z.sub_(self.low), out=z)
        # (narrowed rows no longer hold the own argmax)
        return (z.scatter_(1, self.assign[p, None], -math.inf) if self.stored is None else z), shift

    def _exp_column(self, p: torch.Tensor, c: int) -> torch.Tensor:
        """exp(l - m2) of rows `p` (increasing) at column `c`, as _exp_rows gives them (c is never a row's own
        argmax)."""
        if self.v is not None:  # (narrowed: a contiguous column; else a strided one, far faster than a 2-D index)
            column = self.v[:, c] if self.by_column is None else self.by_column[self._stored(c)]
            x = column.clone() if p.numel() == column.numel() else column.index_select(0, p)  # (all rows: in order)
            return x.clamp_(min=0.0) if self.signed else x
        x = self.logits[:, c].index_select(0, p).to(self.dtype) - self.m2[p]
        return x.clamp_(-self.low, 0.0).exp_()

    def _stored(self, columns: torch.Tensor | int) -> torch.Tensor | int:
        """Where `columns` are in v's rows (narrowed: those of them still held)."""
        if self.stored is None:
            return columns
        if isinstance(columns, int):
            return int(self.position[columns])
        at = self.position[columns]
        return at[at >= 0]

    def _column(self, at: torch.Tensor) -> torch.Tensor:
        """The columns at positions `at` of v's rows."""
        return at if self.stored is None else self.stored[at]

    def narrow(self, columns: torch.Tensor) -> None:
        """Drop `columns` from v's rows, in place, once every point masks them for good (one group holds every
        point): a row read then reads only the columns a point may still move to, and the space they leave holds
        the same values column by column, so that reading one column reads contiguous memory. Done when that
        halves the rows, so all of them together cost about two passes over v and one transpose (later ones keep
        the columns of the first).

        Not for repeated runs (they start again from the first mask) nor without v (half precision).
        """
        free = self.K - columns.numel()
        if self.v is None or self.reusable or not self.v.is_contiguous() or 2 * free > self.width:
            return
        keep = torch.ones(self.width, dtype=torch.bool, device=self.v.device)
        keep[self._stored(columns)] = False
        at = keep.nonzero().squeeze(1)
        N, W = self.v.shape[0], at.numel()
        flat, step = self.v.view(-1), self.buf.shape[0]
        for s in range(0, N, step):  # (row s's new place ends before row s + 1's old one starts: read first)
            n = min(step, N - s)
            rows = torch.index_select(self.v[s : s + n], 1, at, out=self.buf.view(-1)[: n * W].view(n, W))
            flat[s * W : (s + n) * W].view(n, W).copy_(rows)
        self.v = flat[: N * W].view(N, W)
        by_column = flat[N * W : 2 * N * W].view(W, N)  # (ends where the last one starts: 2W <= the old width)
        if self.by_column is not None:  # the kept columns of the last one (a transpose costs several such copies)
            torch.index_select(self.by_column, 0, at, out=by_column)
        else:
            for s in range(0, N, step):  # (in rows, once they are in place: a column at a time would read v W times)
                by_column[:, s : s + step].copy_(self.v[s : s + step].T)
        self.by_column = by_column
        self.stored = self._column(at)
        self.position = torch.full((self.K,), -1, dtype=torch.long, device=self.v.device)
        self.position[self.stored] = torch.arange(W, device=self.v.device)
        self.width = W

    # --------------------------------------------------------------------------------------------- reassign
    def first_answers(self, p: torch.Tensor) -> _Answers:
        """The masked-softmax answers of points `p` masking only their own cluster, from the first pass."""
        ones = torch.ones(p.numel(), dtype=self.dtype, device=p.device)
        return _Answers(self.first_r[p].long(), ones, self.first_rest[p])

    def first_sums(self) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The first answers summed by (own cluster, cluster gone to), for the clusters' first selections, which then
        read no point: (offsets, targets, (2, T) sums of w and w (1 - q)), cluster c's at offsets[c]:offsets[c + 1]."""
        key, inverse = torch.unique(self.assign * self.K + self.first_r, return_inverse=True)  # (sorted)
        u = self.first_rest
        out = torch.zeros(2, key.numel(), dtype=torch.float64, device=key.device)
        out[0].index_add_(0, inverse, self.weights)
        out[1].index_add_(0, inverse, (u / (u + 1)).mul_(self.weights))
        offsets = [0, *torch.bincount(key // self.K, minlength=self.K).cumsum(0).tolist()]
        return offsets, key % self.K, out

    def first_done(self) -> None:
        """No cluster's first selection is left: the first answers are dropped (kept for repeated runs)."""
        if not self.reusable:
            self.first_r = self.first_rest = None

    def group_answers(self, p: torch.Tensor, columns: torch.Tensor, exact: bool = False,
                      ) -> tuple[torch.Tensor, _Answers]:
        """(points, answers) of the group of clusters `columns` holding points `p`: `reassign` (`exact`: as there),
        or in repeated runs the points and answers of an earlier run's group of the same clusters (the same points:
        weight-0 points stay in their groups there), which depend on nothing else. The answers must not be changed."""
        if self.cache is None:
            return p, self.reassign(p, columns, exact)
        key = frozenset(columns.tolist())
        if key not in self.cache:
            if self.cache_room < p.numel():
                return p, self.reassign(p, columns, exact)
            self.cache_room -= p.numel()
            self.cache[key] = p, self.reassign(p, columns, exact)
        return self.cache[key]

    def reassign(self, p: torch.Tensor, columns: torch.Tensor, exact: bool = False) -> _Answers:
        """The masked-softmax answers of points `p`, masking `columns` (which hold the points' own clusters).

        `exact`: masked sums in float64, and their floor, for answers that `update` changes by subtraction.
        """
        mask = self._mask(columns)
        n, step = p.numel(), self.buf.shape[0]
        # written a chunk at a time into the answers (chunks' answers joined at the end would be held twice)
        r = torch.empty(n, dtype=torch.long, device=p.device)
        top = torch.empty(n, dtype=self.dtype, device=p.device)
        rest = torch.empty(n, dtype=torch.float64, device=p.device)
        for s in range(0, n, step):
            self._reassign_rows(p[s : s + step], mask, exact, r[s : s + step], top[s : s + step],
                                rest[s : s + step])
        out = _Answers(r, top, rest)
        if exact:
            out.floor = self._floor(out.rest, 2.0**-52)
        # nothing left in v (all dropped), or a sum so small that dropped entries may matter
        # (with one column left u = 0 exactly: then only where its v underflowed, top = 0 < exp_low)
        one_left = self.K - columns.numel() == 1
        test, bound = (out.top, self.exp_low) if one_left else (out.rest, self.min_sum)
        if p.device.type != "cpu" or p.numel() and float(test.min()) < bound:
            small = (test < bound).nonzero().squeeze(1)
            for s in range(0, small.numel(), self.rows64):
                idx = small[s : s + self.rows64]
                out.r[idx], u, shifted = self._log_domain(p[idx], columns)
                out.doubt[idx] = u / (1 + u)
                # re-shifted rows are now relative to their masked maximum; the others' sum may not be
                # representable in their shift: NaN makes an update redo them
                out.top[idx], out.rest[idx] = 1.0, torch.where(shifted, u, math.nan)
                if exact:  # u is known to the dtype's precision, and what an update subtracts are v's rounded values
                    out.floor[idx] = self._floor(u, self.eps)
        return out

    def _mask(self, columns: torch.Tensor) -> torch.Tensor:
        """How `columns` are zeroed in v's rows: their positions (few), or a vector 1 outside them and 0 in them,
        to multiply by (one streaming pass; filling a column costs about 30 entries of it)."""
        at = self._stored(columns)
        if 32 * at.numel() <= self.width:
            return at
        return torch.ones(self.width, dtype=self.dtype, device=columns.device).index_fill_(0, at, 0.0)

    def _masked_rows(self, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows `p` of v (as _exp_rows gives them), masked by `mask` (see `_mask`), in the reused buffer."""
        x = self._exp_rows(p, self.buf.view(-1)[: p.numel() * self.width].view(-1, self.width))
        return x.mul_(mask) if mask.is_floating_point() else x.index_fill_(1, mask, 0.0)

    def _reassign_rows(self, p: torch.Tensor, mask: torch.Tensor, exact: bool, r: torch.Tensor, top: torch.Tensor,
                       rest: torch.Tensor) -> None:
        """r, top and rest (outputs) of points `p`."""
        x = self._masked_rows(p, mask)
        best, at = _first_max(x)
        top.copy_(best)
        r.copy_(self._column(at))
        x.scatter_(1, at[:, None], 0.0)
        # in float64 where sums will be updated by subtraction: then they may shrink a lot before losing bits
        rest.copy_(self._sum64(x) if exact else x.sum(1))

    def _sum64(self, x: torch.Tensor) -> torch.Tensor:
        """Row sums of `x` in float64, through a small reused float64 buffer (a float64 copy of a whole chunk
        would be new memory, and page faults, on every call)."""
        if x.dtype == torch.float64:
            return x.sum(1)
        out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        for s in range(0, x.shape[0], self.rows64):
            part = x[s : s + self.rows64]
            torch.sum(self._buf64(part.shape[0]).copy_(part), 1, out=out[s : s + self.rows64])
        return out

    def _buf64(self, rows: int) -> torch.Tensor:
        """The first `rows` (at most `rows64`) rows of a reused float64 buffer, made when first needed."""
        if self.buf64 is None:
            self.buf64 = torch.empty(self.rows64, self.K, dtype=torch.float64, device=self.buf.device)
        return self.buf64.view(-1)[: rows * self.width].view(rows, self.width)

    def _floor(self, rest: torch.Tensor, eps: float) -> torch.Tensor:
        """The floor below which `rest`, known to `eps` relative and then lowered by subtraction, is no longer known
        to the precision decisions need (`self.precision`); NaN rest: NaN (always redone)."""
        return (rest * (eps / self.precision)).clamp_(min=self.min_sum).to(self.dtype)  # (a bound: the dtype suffices)

    def update(self, p: torch.Tensor, columns: torch.Tensor, added: int, last: _Answers) -> _Answers:
        """The answers of points `p` whose `last` answers masked `columns` but column `added`; `last` is updated.

        Only that column is read, and subtracted from each point's masked sum; a point whose argmax it was takes the
        next one from its own row (one masked max), and that value leaves its sum too. Points whose sum would lose
        too much precision that way are redone.
        """
        if last.floor is None:  # (answers made for a selection: sums in the dtype)
            last.floor = self._floor(last.rest, self.eps)
        r, top, rest = last.r, last.top, last.rest
        moved = _nonzero(lambda x: x == added, r)
        rest.sub_(self._exp_column(p, added).index_fill_(0, moved, 0.0))  # (a moved point's was its top)
        mask = self._mask(columns)
        # a chunk at a time, here and for the redone ones below: they may be most of a large group
        for m in _pieces(moved, self.buf.shape[0]):
            top[m], at = _first_max(self._masked_rows(p[m], mask))  # (nothing left: 0, and redone)
            r[m] = self._column(at)
            rest[m] -= top[m]
        redo = _nonzero(lambda x, floor: ~(x >= floor), rest, last.floor)  # (NaN too)
        torch.div(rest, torch.add(rest, top, out=last.doubt), out=last.doubt)  # (in place: a large group's)
        for idx in _pieces(redo, self.buf.shape[0]):
            last.put(idx, self.reassign(p[idx], columns, exact=True))
        return last

    def _log_domain(self, p: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """(r, u, re-shifted) of at most `rows64` rows `p`, from their log values.

        u = Σ exp(l_c - l_r) over the columns c left beside r is taken as exp(l_s - l_r) Σ exp(l_c - l_s), l_s the
        largest of them: the sum's terms that matter are then in exp's range, however far below l_r they lie.

        Rows whose masked maximum lies below half of exp's range are re-shifted to it: a point's mask only grows,
        so that brings every column it may still move to back into exp's range for its next visits (masked ones
        may overflow: never read). Rows whose maximum is still near their shift keep it: their sum is small
        because the row is saturated, and another shift would not change that."""
        z, shift = self._log_rows(p)
        if columns is not None:
            z.index_fill_(1, self._stored(columns), -math.inf)
        top, at = _first_max(z)
        z.sub_(top[:, None])
        below = top.double() if shift is None else top.double() + shift  # (l_r - m2)
        # reusable: another run starts from the first mask again, so v and m2 stay as the first pass left them
        shifted = (below < -self.low / 2) & (not self.reusable)
        if bool(shifted.any()):
            idx = shifted.nonzero().squeeze(1)
            w = z[idx].to(self.dtype)
            if self.v is not None:
                self.v.index_copy_(0, p[idx], _encode(w, w.clamp(min=-self.low).exp_(), self.low))
                if self.by_column is not None:
                    self.by_column.index_copy_(1, p[idx], self.v[p[idx]].T)
                self.signed = True
            if self.m2 is not None:  # (from the logits: the new shift is l_r itself)
                self.m2.index_copy_(0, p[idx], top[idx].to(self.dtype))
        z.scatter_(1, at[:, None], -math.inf)
        second = z.amax(1)
        second.masked_fill_(second == -math.inf, 0.0)  # (nothing left beside r: u = 0)
        low, floor = (self.low, self.exp_low) if z.dtype == self.dtype else (-_LOG_FLOOR, _EXP_FLOOR)
        e = z.sub_(second[:, None]).clamp_(min=-low).exp_().sub_(floor)  # (clamped entries, masked ones too: 0)
        return self._column(at), e.sum(1).double().mul_(second.double().exp_()), shifted


def _first_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row maxima, first column of each) of a 2-D tensor, as ``torch.max(x, 1)``.

    On CPU through NumPy, whose vectorised argmax is ~10x faster than torch's max with indices (same first-index
    rule); the engine spends most of its time there.
    """
    if x.device.type != "cpu" or x.shape[1] == 0:
        return torch.max(x, 1)
    where = torch.from_numpy(x.contiguous().numpy().argmax(1))
    return x.gather(1, where[:, None]).squeeze(1), where


def _pieces(idx: torch.Tensor, step: int) -> list[torch.Tensor]:
    """`idx` in consecutive pieces of at most `step` (none if it is empty, unlike ``split``)."""
    return [idx[s : s + step] for s in range(0, idx.numel(), step)]


def _nonzero(test, *vectors: torch.Tensor) -> torch.Tensor:
    """The positions where ``test(*vectors)`` holds, for 1-D `vectors`; on CPU in NumPy (for the tens of thousands
    of points of a large group, NumPy's comparisons and nonzero take a quarter of torch's time on one thread)."""
    if vectors[0].device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(test(*(v.numpy() for v in vectors))))
    return test(*vectors).nonzero().squeeze(1)


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


def _point_mass(points: _Points, sums: _Sums, answers: _Answers, p: torch.Tensor, slot: torch.Tensor | None,
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


def _cluster_stats(points: _Points, sums: _Sums) -> list[list[float]]:
    """Per cluster: [weight of its points, Σ w·doubt]: the only per-point numbers selection needs."""
    stats = torch.zeros(2, points.K, dtype=torch.float64, device=points.assign.device)
    stats[0].index_add_(0, points.assign, points.weights)  # (bincount would give an empty process int64 counts)
    stats[1].index_add_(0, points.assign, points.weights * points.doubt)
    if not points.reusable:  # (a single run reads it here only)
        points.doubt = None
    return sums(stats).T.tolist()


def _sorted(p: torch.Tensor) -> torch.Tensor:
    """Points `p` in increasing order, in place on CPU: their rows are then read in memory order. (A group's points
    are a few sorted runs, its parts': a stable sort merges them in about linear time.)"""
    if p.device.type == "cpu":
        p.numpy().sort(kind="stable")
        return p
    return p.sort().values


def _cluster_points(points: _Points) -> dict[int, torch.Tensor]:
    """Cluster -> its points, in index order (weight 0: absent, unless kept for reuse, where they add 0)."""
    order = torch.argsort(points.assign, stable=True)
    kept = (points.weights[order] > 0) | points.reusable
    counts = torch.bincount(points.assign[order][kept], minlength=points.K).tolist()
    # copies, not views: a view would keep all points' indices alive until the last cluster is merged
    return {c: part.clone() for c, part in enumerate(order[kept].split(counts))}


def _select_and_partner(points: _Points, aggregation: str, sums: _Sums) -> list[tuple]:
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
                points.narrow(members[G])
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
        # points of weight 0, kept for reuse, they are not the same points), unless this was the last merge or the
        # group is small (rows filling an eighth of the chunk buffer are reassigned afresh for less than an update's
        # dozen small operations and its redone points cost)
        if (stats[H][0] == 0 and not group_points[H].numel() and new < size - 1
                and p.numel() * points.width > points.buf.numel() // 8):
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


def _all_pairs(points: _Points, _: str, sums: _Sums) -> list[tuple]:
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
