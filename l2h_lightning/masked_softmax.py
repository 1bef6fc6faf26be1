"""Masked-softmax answers of sets of points, from one pass over the logits: the engine's reassignment step.

A reassignment of point x masking a set of clusters gives r (the masked argmax) and u = Σ_{c outside the mask,
c ≠ r} p_c / p_r, so that q = 1 / (1 + u) and 1 - q = u / (1 + u) keep their precision when q rounds to 1.

Why it is fast (torch on the logits' device; on CPU, NumPy for row argmaxes):

- One pass stores ``v = exp(l - m2)`` (m2: the row's second-largest logit; the row's own argmax is always masked)
  in a new tensor or in place of the logits (`_Rows`). A reassignment is then a masked max and a masked sum over
  the points' rows of v (sorted: read in memory order), in cache-sized chunks through one reused buffer.
  Entries too small for exp keep their log value (as a negative number), so the rows whose masked sum underflows
  are redone in the log domain (from the logits, in their dtype, relative to the largest term of the sum), and
  re-shifted where their masked maximum fell far below the shift, so that their next visits are fast.
- The pass also leaves each point's answers with only its own cluster masked (`Points.first_answers`), and
  answers masking one more cluster are the last ones updated by that one column (`Points.update`): points
  whose argmax it was take the next one from their own row. Once one group holds every point, its columns are
  dropped from v's rows (in place, `_Rows.narrow`), and the space they leave holds the free columns contiguously:
  the column an absorbed class subtracts is then one contiguous read.
- Bootstrap replicates share the pass, and a group that an earlier replicate also formed reuses that replicate's
  answers (`Points.group_answers`; weight-0 points stay in their groups, adding 0).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# float64 exp is fast down to here; nearer its smallest normal (e^-708), below it and at -inf it is 12-280x slower
# (float32's: fast down to -87; benchmarks/bench_slow_paths.py)
_LOG_FLOOR = -700.0
_EXP_FLOOR = float(torch.tensor(_LOG_FLOOR, dtype=torch.float64).exp())  # as exp gives it
# the smallest chunk, in entries (1 MiB of float32; see _chunk_rows)
_MIN_CHUNK = 1 << 18


def _chunk_rows(logits: torch.Tensor, workers: int = 1) -> int:
    """Rows per chunk: cache-sized on CPU (larger on CUDA), and at most 1/32 of the logits for all `workers`
    together, so that the few chunk-sized buffers stay a small fraction of them; but at least `_MIN_CHUNK` entries:
    for logits under 2^23 entries that is more than 1/32 of them (a few MiB in all), and their loops take a few
    steps instead of hundreds."""
    N, K = logits.shape
    elements = min(1 << 26 if logits.is_cuda else 1 << 20, max(_MIN_CHUNK, N * K // (32 * workers)))
    return max(1, min(N, elements // K))


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


def _encode(z: torch.Tensor, e: torch.Tensor, low: float) -> torch.Tensor:
    """v, in place of z = l - m2: exp(z) (= e) where that is a normal number, else the negative z + low.

    z >= -low: v = e > 0. z < -low: v = (z + low) + e, which is negative (float steps of z near -low are far larger
    than e = exp(-low)); the log value comes back as v - low. Masked columns (z = -inf) stay -inf.
    """
    return z.add_(low).clamp_(max=0.0).add_(e)


class _Rows:
    """What one pass over the logits leaves: per point its argmax, doubt 1 - g and first answers, and v, the rows
    to reassign from; read masked (`masked`), a column at a time (`column`), or in the log domain (`log_domain`)."""

    def __init__(self, logits: torch.Tensor, inplace: bool, reusable: bool, threads: int) -> None:
        N, self.K = logits.shape
        device = logits.device
        self.dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        self.eps = torch.finfo(self.dtype).eps
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
        self.reusable = reusable  # for several runs: rows are never re-shifted (see log_domain) nor narrowed
        self.buf = torch.empty(_chunk_rows(logits), self.K, dtype=self.dtype, device=device)
        # the columns v's rows still hold (all, until `narrow` drops those no point can move to any more), and
        # then the same values column by column
        self.width, self.stored, self.position, self.by_column = self.K, None, None, None
        self.buf64 = None  # for float64 row sums and the log domain from v, when first needed
        self.rows64 = max(1, self.buf.numel() // (4 * self.K))  # float64 rows at a time: half of buf's bytes
        if self.K > 2 and not self.bad_rows:  # (K = 2: nothing is left beside the second, u = 0)
            # sums too small for v (saturated rows), all at once, as a reassignment would redo them one cluster at a
            # time
            small = (self.first_rest < self.min_sum).nonzero().squeeze(1)
            for s in range(0, small.numel(), self.rows64):
                idx = small[s : s + self.rows64]
                r, self.first_rest[idx], _ = self.log_domain(idx, None)
                self.first_r[idx] = r.int()

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

    def column(self, p: torch.Tensor, c: int) -> torch.Tensor:
        """exp(l - m2) of rows `p` (increasing) at column `c`, as `masked` gives them (c is never a row's own
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

    def ids(self, at: torch.Tensor) -> torch.Tensor:
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
        self.stored = self.ids(at)
        self.position = torch.full((self.K,), -1, dtype=torch.long, device=self.v.device)
        self.position[self.stored] = torch.arange(W, device=self.v.device)
        self.width = W

    def mask(self, columns: torch.Tensor) -> torch.Tensor:
        """How `columns` are zeroed in v's rows: their positions (few), or a vector 1 outside them and 0 in them,
        to multiply by (one streaming pass; filling a column costs about 30 entries of it)."""
        at = self._stored(columns)
        if 32 * at.numel() <= self.width:
            return at
        return torch.ones(self.width, dtype=self.dtype, device=columns.device).index_fill_(0, at, 0.0)

    def masked(self, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows `p` of v (exp(l - m2), 0 where too small to matter), masked by `mask` (see `mask`), in the reused
        buffer."""
        x = self._exp_rows(p, self.buf.view(-1)[: p.numel() * self.width].view(-1, self.width))
        return x.mul_(mask) if mask.is_floating_point() else x.index_fill_(1, mask, 0.0)

    def sum64(self, x: torch.Tensor) -> torch.Tensor:
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

    def log_domain(self, p: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """(r, u, re-shifted) of at most `rows64` rows `p` masking `columns` (None: only their own), from their log
        values.

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
        return self.ids(at), e.sum(1).double().mul_(second.double().exp_()), shifted


class Answers:
    """Masked-softmax answers of a list of points, in its order: argmax r, v there (top), the masked sum without it
    (rest), the doubt 1 - q = rest / (rest + top), and the floor below which rest, lowered by subtraction, has
    lost the precision decisions need."""

    FIELDS = ("r", "top", "rest", "doubt", "floor")

    def __init__(self, r: torch.Tensor, top: torch.Tensor, rest: torch.Tensor) -> None:
        self.r, self.top, self.rest = r, top, rest
        self.floor = None  # (set by `Points.reassign` or `update`)
        self.doubt = torch.add(rest, top)
        torch.div(rest, self.doubt, out=self.doubt)  # (in place: a large group's)

    def clone(self) -> Answers:
        """A copy that can be updated without changing these answers (kept for reuse)."""
        out = Answers.__new__(Answers)
        for name in self.FIELDS:
            value = getattr(self, name)
            setattr(out, name, None if value is None else value.clone())
        return out

    def put(self, idx: torch.Tensor, new: Answers) -> None:
        """Replace the answers at positions `idx` by `new` (answers of those points)."""
        for name in self.FIELDS:
            getattr(self, name)[idx] = getattr(new, name)


class Points:
    """Masked-softmax answers (docs/algorithm.md) of any set of points: afresh (`reassign`), from the first pass
    (`first_answers`), or updated by one more masked column (`update`).

    Example:
        >>> import torch
        >>> points = Points(torch.tensor([[3.0, 2.0, 0.0], [0.0, 3.0, 1.0]]), inplace=False)
        >>> points.reassign(torch.tensor([0, 1]), torch.tensor([0, 1])).r.tolist()  # (only class 2 is left)
        [2, 2]
    """

    def __init__(self, logits: torch.Tensor, inplace: bool, reusable: bool = False, threads: int = 1) -> None:
        self.rows = rows = _Rows(logits, inplace, reusable, threads)
        self.K, self.assign, self.bad_rows, self.reusable = rows.K, rows.assign, rows.bad_rows, reusable
        # the relative precision a sum updated by subtraction must keep: near-ties below it may go either way
        self.precision = 2.0**-40 if rows.dtype == torch.float64 else 2.0**-22
        # for several runs: a group's answers are kept for the next run that forms the same group, within half the
        # logits' size (36 bytes a point: its index, argmax, v there, masked sum and doubt)
        self.cache: dict[frozenset, tuple[torch.Tensor, Answers]] | None = {} if reusable else None
        self.cache_room = logits.numel() * logits.element_size() // (2 * 36)

    def restart(self, weights: torch.Tensor | None) -> None:
        """Weigh the points by `weights` (None: 1 each) for the next run."""
        N, device = self.assign.shape[0], self.assign.device
        # (unweighted: one 1 seen N times, not N float64 ones)
        self.weights = torch.ones(1, dtype=torch.float64, device=device).expand(N) if weights is None else weights
        self.weighted = weights is not None

    def first_answers(self, p: torch.Tensor) -> Answers:
        """The masked-softmax answers of points `p` masking only their own cluster, from the first pass."""
        ones = torch.ones(p.numel(), dtype=self.rows.dtype, device=p.device)
        return Answers(self.rows.first_r[p].long(), ones, self.rows.first_rest[p])

    def first_sums(self) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The first answers summed by (own cluster, cluster gone to), for the clusters' first selections, which then
        read no point: (offsets, targets, (2, T) sums of w and w (1 - q)), cluster c's at offsets[c]:offsets[c + 1]."""
        key, inverse = torch.unique(self.assign * self.K + self.rows.first_r, return_inverse=True)  # (sorted)
        u = self.rows.first_rest
        out = torch.zeros(2, key.numel(), dtype=torch.float64, device=key.device)
        out[0].index_add_(0, inverse, self.weights)
        out[1].index_add_(0, inverse, (u / (u + 1)).mul_(self.weights))
        offsets = [0, *torch.bincount(key // self.K, minlength=self.K).cumsum(0).tolist()]
        return offsets, key % self.K, out

    def first_done(self) -> None:
        """No cluster's first selection is left: the first answers are dropped (kept for repeated runs)."""
        if not self.reusable:
            self.rows.first_r = self.rows.first_rest = None

    def group_answers(self, p: torch.Tensor, columns: torch.Tensor, exact: bool = False,
                      ) -> tuple[torch.Tensor, Answers]:
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

    def reassign(self, p: torch.Tensor, columns: torch.Tensor, exact: bool = False) -> Answers:
        """The masked-softmax answers of points `p`, masking `columns` (which hold the points' own clusters).

        `exact`: masked sums in float64, and their floor, for answers that `update` changes by subtraction.
        """
        rows = self.rows
        mask = rows.mask(columns)
        n, step = p.numel(), rows.buf.shape[0]
        # written a chunk at a time into the answers (chunks' answers joined at the end would be held twice)
        r = torch.empty(n, dtype=torch.long, device=p.device)
        top = torch.empty(n, dtype=rows.dtype, device=p.device)
        rest = torch.empty(n, dtype=torch.float64, device=p.device)
        for s in range(0, n, step):
            x = rows.masked(p[s : s + step], mask)
            best, at = _first_max(x)
            top[s : s + step], r[s : s + step] = best, rows.ids(at)
            x.scatter_(1, at[:, None], 0.0)
            # in float64 where sums will be updated by subtraction: then they may shrink a lot before losing bits
            rest[s : s + step] = rows.sum64(x) if exact else x.sum(1)
        out = Answers(r, top, rest)
        if exact:
            out.floor = self._floor(out.rest, 2.0**-52)
        # nothing left in v (all dropped), or a sum so small that dropped entries may matter
        # (with one column left u = 0 exactly: then only where its v underflowed, top = 0 < exp_low)
        one_left = self.K - columns.numel() == 1
        test, bound = (out.top, rows.exp_low) if one_left else (out.rest, rows.min_sum)
        if p.device.type != "cpu" or p.numel() and float(test.min()) < bound:
            small = (test < bound).nonzero().squeeze(1)
            for s in range(0, small.numel(), rows.rows64):
                idx = small[s : s + rows.rows64]
                out.r[idx], u, shifted = rows.log_domain(p[idx], columns)
                out.doubt[idx] = u / (1 + u)
                # re-shifted rows are now relative to their masked maximum; the others' sum may not be
                # representable in their shift: NaN makes an update redo them
                out.top[idx], out.rest[idx] = 1.0, torch.where(shifted, u, math.nan)
                if exact:  # u is known to the dtype's precision, and what an update subtracts are v's rounded values
                    out.floor[idx] = self._floor(u, rows.eps)
        return out

    def _floor(self, rest: torch.Tensor, eps: float) -> torch.Tensor:
        """The floor below which `rest`, known to `eps` relative and then lowered by subtraction, is no longer known
        to the precision decisions need (`self.precision`); NaN rest: NaN (always redone)."""
        # (a bound: the dtype suffices)
        return (rest * (eps / self.precision)).clamp_(min=self.rows.min_sum).to(self.rows.dtype)

    def worth_updating(self, n: int) -> bool:
        """Whether the answers of `n` points are better updated by a column than reassigned afresh: rows filling an
        eighth of the chunk buffer are reassigned for less than an update's dozen small operations and its redone
        points cost."""
        return n * self.rows.width > self.rows.buf.numel() // 8

    def update(self, p: torch.Tensor, columns: torch.Tensor, added: int, last: Answers) -> Answers:
        """The answers of points `p` whose `last` answers masked `columns` but column `added`; `last` is updated.

        Only that column is read, and subtracted from each point's masked sum; a point whose argmax it was takes the
        next one from its own row (one masked max), and that value leaves its sum too. Points whose sum would lose
        too much precision that way are redone.
        """
        rows = self.rows
        if last.floor is None:  # (answers made for a selection: sums in the dtype)
            last.floor = self._floor(last.rest, rows.eps)
        r, top, rest = last.r, last.top, last.rest
        moved = _nonzero(lambda x: x == added, r)
        rest.sub_(rows.column(p, added).index_fill_(0, moved, 0.0))  # (a moved point's was its top)
        mask = rows.mask(columns)
        # a chunk at a time, here and for the redone ones below: they may be most of a large group
        for m in _pieces(moved, rows.buf.shape[0]):
            top[m], at = _first_max(rows.masked(p[m], mask))  # (nothing left: 0, and redone)
            r[m] = rows.ids(at)
            rest[m] -= top[m]
        redo = _nonzero(lambda x, floor: ~(x >= floor), rest, last.floor)  # (NaN too)
        torch.div(rest, torch.add(rest, top, out=last.doubt), out=last.doubt)  # (in place: a large group's)
        for idx in _pieces(redo, rows.buf.shape[0]):
            last.put(idx, self.reassign(p[idx], columns, exact=True))
        return last


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
