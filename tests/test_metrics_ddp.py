"""Two real processes (gloo, CPU): the metrics gather uneven and empty shards and agree with one process."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from l2h_lightning import Hierarchy, l2h
from l2h_lightning.metrics import DendrogramPurity, HierarchyMetrics, LCAHeightDistance

TRUTH = Hierarchy.from_levels([[0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]])


def data():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(6, (230,), generator=g)
    logits = torch.randn(230, 8, generator=g) + 3 * torch.nn.functional.one_hot(target, 8)
    return logits, target


def make_metrics(tree):
    return {
        "all": HierarchyMetrics(target_hierarchy=TRUTH),
        "dp": DendrogramPurity(),
        "fixed_lhd": LCAHeightDistance(hierarchy=tree, target_hierarchy=TRUTH),
        "zero_rows": DendrogramPurity(),  # rank 1 calls update only with zero rows
    }


def results(metrics):
    out = {k: {n: float(v) for n, v in m.compute().items()} if k == "all" else float(m.compute()) for k, m in metrics.items()}
    out["tree"] = metrics["all"].hierarchy.to_dict()
    return out


def worker(rank, port, shards, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    logits, target = data()
    metrics = make_metrics(l2h(logits))
    for start, stop in shards[rank]:  # rank 1 may get nothing at all
        for name, m in metrics.items():
            if name == "zero_rows" and rank == 1:
                stop = start
            m.update(logits[start:stop] if name != "fixed_lhd" else logits[start:stop].argmax(1), target[start:stop])
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results(metrics), f)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "shards",
    [
        [[(0, 100), (100, 150)], [(150, 230)]],  # uneven
        [[(0, 100), (100, 230)], []],  # rank 1 has no data
    ],
    ids=["uneven", "empty-rank"],
)
def test_two_processes_agree_with_one(tmp_path, shards):
    mp.spawn(worker, args=(free_port(), shards, str(tmp_path)), nprocs=2, join=True)
    logits, target = data()
    single = make_metrics(l2h(logits))
    for name, m in single.items():
        rows = slice(None) if name != "zero_rows" else slice(0, max(stop for _, stop in shards[0]))
        m.update(logits[rows] if name != "fixed_lhd" else logits.argmax(1), target[rows])
    expected = results(single)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["tree"] == expected["tree"]
        assert got["dp"] == pytest.approx(expected["dp"])
        assert got["fixed_lhd"] == pytest.approx(expected["fixed_lhd"])
        assert got["zero_rows"] == pytest.approx(expected["zero_rows"])
        assert got["all"] == pytest.approx(expected["all"])
