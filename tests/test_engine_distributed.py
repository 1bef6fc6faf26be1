"""`l2h(..., process_group=)` with real gloo process groups: each process passes its own rows."""

import os
import socket
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from l2h_lightning import AGGREGATIONS, l2h

pytestmark = pytest.mark.timeout(240)


def _cases():
    """(name, logits, weights, shard sizes per world size): ordinary, saturated, never-predicted classes."""
    rng = np.random.default_rng(0)
    out = []
    for name, k, n in (("ordinary", 12, 300), ("saturated", 10, 240), ("never_predicted", 16, 200)):
        x = rng.normal(size=(n, k)) * 2
        y = rng.integers(k, size=n)
        if name == "saturated":  # top-1/top-2 gaps of 20..300: softmax maxima round to 1
            x[np.arange(n), y] += rng.uniform(20, 300, size=n)
        else:
            x[np.arange(n), y] += 3
        if name == "never_predicted":
            x[:, k // 2 :] -= 8
        w = rng.integers(0, 4, size=n).astype(np.float64)
        out.append((name, torch.tensor(x, dtype=torch.float32), torch.tensor(w)))
    return out


def _shards(n: int, world: int) -> list[slice]:
    """Uneven shards, the last process empty."""
    cuts = [0] + sorted(np.random.default_rng(world).choice(np.arange(1, n), world - 2, replace=False).tolist()) + [n, n]
    return [slice(cuts[i], cuts[i + 1]) for i in range(world)]


def _worker(rank: int, world: int, port: int, results) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        out = {}
        for name, x, w in _cases():
            part = _shards(x.shape[0], world)[rank]
            for aggregation in AGGREGATIONS:
                for weighted in (False, True):
                    tree = l2h(x[part], aggregation, weights=w[part] if weighted else None, process_group=dist.group.WORLD)
                    out[(name, aggregation, weighted)] = (tree.merges.tolist(), {k: v.tolist() for k, v in tree.evidence.items()})
        bad = torch.randn(5, 4) if rank != 1 else torch.full((5, 4), float("nan"))
        try:
            l2h(bad, process_group=dist.group.WORLD)
            out["error"] = None
        except ValueError as err:
            out["error"] = str(err)
        try:
            l2h(torch.randn(3, 4 + (rank == 0)), process_group=dist.group.WORLD)
            out["k_error"] = None
        except ValueError as err:
            out["k_error"] = str(err)
        results[rank] = out
        dist.barrier()
        dist.destroy_process_group()
    except Exception:
        results[rank] = traceback.format_exc()


def _run(world: int) -> list:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(world, port, results), nprocs=world, join=True)
        return [results[r] for r in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_every_process_gets_the_tree_of_all_rows(world):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = _run(world)
    for r in results:
        assert isinstance(r, dict), r  # a traceback from that process otherwise
    checked = 0
    for name, x, w in _cases():
        for aggregation in AGGREGATIONS:
            for weighted in (False, True):
                key = (name, aggregation, weighted)
                single = l2h(x, aggregation, weights=w if weighted else None)
                merges = [r[key][0] for r in results]
                assert all(m == merges[0] for m in merges), key  # identical on every process
                assert merges[0] == single.merges.tolist(), key
                for field, values in results[0][key][1].items():
                    np.testing.assert_allclose(values, single.evidence[field].tolist(), rtol=1e-9, equal_nan=True)
                checked += 1
    assert checked == 3 * len(AGGREGATIONS) * 2
    for r in results:  # an error on one process is raised on all, naming it
        assert "process 1: logits has NaN or infinite entries in 5 of its 5 rows" in r["error"]
        assert "disagree on the number of clusters K" in r["k_error"]


def test_process_group_needs_initialised_distributed():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        l2h(torch.randn(4, 3), process_group=object())
