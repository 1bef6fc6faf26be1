"""Clade support (docs/insight.md): how often bootstrap replicates of the logits rebuild each clade of a tree.

Replicate b is a weighted run of `l2h` on the same logits, the weights being multinomial resampling counts of
the rows (times the user's point weights, if any): nothing is copied. The support of an internal node v is the
fraction of replicate trees with an internal node whose leaf set is exactly v's. Leaf sets are compared by a
128-bit key (the sum of random per-leaf keys mod 2^128): O(K) per tree, and two different sets share a key
with probability about 2^-128.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import torch

from ..engine import l2h_replicates
from ..hierarchy import Hierarchy

_MASK = (1 << 128) - 1
_KEY_SEED = 0x5EED_C1ADE  # the per-leaf keys are fixed: they only need to be distinct sums


def clade_support(
    logits: torch.Tensor,
    tree: Hierarchy | None = None,
    *,
    n_boot: int = 100,
    seed: int = 0,
    aggregation: str = "cluster_mean",
    weights: torch.Tensor | None = None,
    process_group: Any = None,
) -> torch.Tensor:
    """Bootstrap support of every internal node of `tree`: (K-1,) float64 tensor, entry i for node K+i.

    Args:
        logits: (N, K) logits (this process's rows with `process_group`).
        tree: the tree to score; default ``l2h(logits, aggregation, weights=weights)``.
        n_boot: number of replicates B; seed: seeds the draws (see `bootstrap_weights`).
        aggregation: passed to every `l2h` run.
        weights: optional (N,) point weights; replicate weights are weights * resampling counts.
        process_group: rows split over processes: every process passes its own rows and gets the same support
            (the replicates resample the concatenated rows).

    Cost: one pass over the logits, B + 1 merge loops (one for the default tree), O(B K) for the comparison.

    Example:
        >>> import torch
        >>> logits = torch.randn(200, 4)
        >>> logits[:100, :2] += 4.0   # points of clusters 0 and 1 hesitate between them
        >>> logits[100:, 2:] += 4.0
        >>> support = clade_support(logits, n_boot=20)
        >>> support.shape, float(support[-1])
        (torch.Size([3]), 1.0)
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N points, K clusters), got shape {tuple(logits.shape)}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    K = logits.shape[1]
    if tree is not None and (not isinstance(tree, Hierarchy) or tree.num_leaves != K):
        raise ValueError(f"tree must be a Hierarchy over the {K} columns of logits")
    draws = bootstrap_weights(logits.shape[0], n_boot, seed=seed, weights=weights, device=logits.device,
                              process_group=process_group)
    # the default tree is one more run of the same pass (its groups' answers are then reused by the replicates)
    runs = l2h_replicates(logits, draws if tree is not None else itertools.chain([weights], draws), aggregation,
                          process_group=process_group)
    if tree is None:
        tree = next(runs)
    if K == 1:
        return torch.zeros(0, dtype=torch.float64)
    keys = clade_keys(tree)
    hits = torch.zeros(len(keys), dtype=torch.float64)
    for replicate in runs:
        found = set(clade_keys(replicate))
        hits += torch.tensor([k in found for k in keys], dtype=torch.float64)
    return hits / n_boot


def clade_keys(tree: Hierarchy) -> list[int]:
    """One 128-bit key per internal node (node K+i at index i): equal keys mean equal leaf sets."""
    rng = random.Random(_KEY_SEED)
    key = [rng.getrandbits(128) for _ in range(tree.num_leaves)]
    for ch in tree.children:
        key.append(sum(key[c] for c in ch) & _MASK)
    return key[tree.num_leaves :]


def bootstrap_weights(
    n_rows: int,
    n_boot: int,
    *,
    seed: int = 0,
    weights: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    process_group: Any = None,
) -> Iterator[torch.Tensor]:
    """The (n_rows,) weights of each bootstrap replicate, in order: resampling counts, times `weights`.

    One process: a generator on `device` seeded with `seed`; replicate b's counts are
    ``torch.bincount(torch.randint(n_rows, (n_rows,), generator=g, device=device), minlength=n_rows)``, drawn
    for b = 0, 1, ... from that one generator.

    With `process_group` (P processes, process p holding n_p of the N = sum n_p rows): process 0 of the group
    draws, for every replicate, how many of the N draws fall on each process (N uniform draws over the
    concatenated rows, tallied by process; a generator seeded with `seed`) and broadcasts the (B, P) table;
    process p then spreads its T_p draws uniformly over its own rows (a generator seeded with
    ``seed + 1_000_003 * (p + 1)``). Given the totals the draws on different processes are independent and
    uniform, so the concatenated counts are exactly Multinomial(N, uniform): the bootstrap of the concatenated
    rows. The draws differ from a one-process run with the same seed.

    Example:
        >>> [int(w.sum()) for w in bootstrap_weights(4, 3, seed=1)]  # each replicate draws 4 rows
        [4, 4, 4]
    """
    n_rows, n_boot = int(n_rows), int(n_boot)
    device = torch.device("cpu") if device is None else torch.device(device)
    if weights is not None:
        weights = torch.as_tensor(weights, device=device)
        if weights.shape != (n_rows,):
            raise ValueError(f"weights must have shape ({n_rows},) (one per row), got {tuple(weights.shape)}")
    if process_group is None:
        gen = torch.Generator(device=device).manual_seed(seed)
        totals = [n_rows] * n_boot
    else:
        totals, rank = _process_totals(n_rows, n_boot, seed, device, process_group)
        gen = torch.Generator(device=device).manual_seed(seed + 1_000_003 * (rank + 1))
    for total in totals:
        if n_rows:
            draws = torch.randint(n_rows, (total,), generator=gen, device=device)
            counts = torch.bincount(draws, minlength=n_rows)
        else:
            counts = torch.zeros(0, dtype=torch.long, device=device)
        yield counts if weights is None else weights * counts


def _process_totals(n_rows: int, n_boot: int, seed: int, device: torch.device, group: Any) -> tuple[list[int], int]:
    """For every replicate, how many of the N draws land on this process (the same table on every process)."""
    import torch.distributed as dist

    P, rank = dist.get_world_size(group), dist.get_rank(group)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(P)]
    dist.all_gather(sizes, torch.tensor([n_rows], dtype=torch.long, device=device), group=group)
    sizes_t = torch.cat(sizes)
    table = torch.zeros(n_boot, P, dtype=torch.long, device=device)
    if rank == 0:
        N = int(sizes_t.sum())
        ends = sizes_t.cumsum(0)
        gen = torch.Generator(device=device).manual_seed(seed)
        for b in range(n_boot):
            draws = torch.randint(N, (N,), generator=gen, device=device)
            table[b] = torch.bincount(torch.searchsorted(ends, draws, right=True), minlength=P)
    dist.broadcast(table, src=dist.get_global_rank(group, 0), group=group)
    return table[:, rank].tolist(), rank
