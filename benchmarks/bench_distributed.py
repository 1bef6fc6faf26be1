"""Benchmark L2H over torch.distributed: each process keeps its own rows, against gathering every row everywhere.

    python benchmarks/bench_distributed.py                   # gloo, 1 and 2 processes (4 too with >= 4 cores)
    python benchmarks/bench_distributed.py --quick           # a smoke run at 20,000 x 200
    python benchmarks/bench_distributed.py --uneven          # shards of sizes proportional to 1, 2, ..., P
    python benchmarks/bench_distributed.py --device cuda --backend nccl   # one process per GPU (see below)

Two designs, in the same run, on the same logits (default: the planted family at 200,000 x 1,000):

- ``rows stay``: ``l2h(own_rows, process_group=WORLD)`` on every process;
- ``no group`` (one process only): plain ``l2h(logits)``, to show what the collectives cost by themselves;
- ``gather``: the design it replaces (the monitor's former one): every process all-gathers every process's logits
  (torchmetrics' ``gather_all_tensors``, padding uneven shards), rank 0 runs ``l2h`` on all of them and broadcasts
  the merges (``broadcast_object_list``).

Each world size runs in two sets of fresh processes (``torch.multiprocessing`` spawn, ``tcp://127.0.0.1``): one for
the timings (median of ``--repeats``; a tree's time is the slowest process's), one for the peak memory (VmHWM
after resetting it, with ``MALLOC_MMAP_THRESHOLD_`` so that freed memory leaves at once; on CUDA the allocator's
peak). Collectives are counted by wrapping ``torch.distributed``'s functions in the benchmark's processes only:
calls, bytes each process sends (its tensor, or its pickled object) and bytes it receives. Every process reads
its shard from a raw file (no memory map, whose pages would count as resident). Each process uses
``cores // P`` torch threads (``--threads`` to override), as torchrun's one-thread default would on small machines.
Columns: time per tree = median over repeats of the slowest process's time (gather design: including the
gather and the broadcast); collectives per step = the most collectives any process called, over K - 1 merges;
sent / received per process = the most bytes any process contributed to / got from collectives per tree;
peak per process = the largest whole-process peak (VmHWM: Python, torch, its shard, what the tree added);
peak / all logits = (own shard + peak beyond it) / the bytes of all N x K logits, for the worst process.
NCCL refuses two ranks on one GPU ("Duplicate GPU detected", NCCL >= 2.5), so with ``--backend nccl`` the process
counts stop at the number of GPUs; two processes sharing one GPU run with ``--backend gloo --device cuda``, where
only ``rows stay`` runs (gloo has no CUDA all_gather, which the gather design needs).
Prints a Markdown table (ready for the README) and writes JSON (default
``benchmarks/results/distributed_<device>.json``; ``--quick`` writes under the temporary directory).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_engine import reset_peak_rss, rss_bytes  # noqa: E402

SCRATCH = Path(tempfile.gettempdir()) / "l2h_bench_distributed"
DESIGNS = ("rows stay", "gather")
COLLECTIVES = ("barrier", "all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "reduce",
               "gather", "scatter", "all_to_all", "reduce_scatter", "all_gather_into_tensor", "reduce_scatter_tensor")


# ------------------------------------------------------------------------------------ counting collectives
def _tensor_bytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_tensor_bytes(t) for t in x)
    return 0


def _object_bytes(x) -> int:
    return sum(len(pickle.dumps(o)) for o in x) if isinstance(x, (list, tuple)) else len(pickle.dumps(x))


class Counter:
    """Wraps torch.distributed's collectives in this process: calls, bytes sent and received, while `active`."""

    def __init__(self) -> None:
        self.active = False
        self.reset()
        dist = torch.distributed
        for name in COLLECTIVES:
            if hasattr(dist, name):
                setattr(dist, name, self._wrap(name, getattr(dist, name)))

    def reset(self) -> None:
        self.calls: dict[str, int] = {}
        self.sent = 0
        self.received = 0

    def _wrap(self, name: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            world = torch.distributed.get_world_size(kwargs.get("group"))
            rank = torch.distributed.get_rank()
            if name == "barrier":
                sent = 0
            elif name == "all_gather_object":  # (output list, obj)
                sent = _object_bytes(args[1])
            elif name == "broadcast_object_list":  # (objects, src): only the source's objects mean anything
                src = kwargs.get("src", args[1] if len(args) > 1 else 0)
                sent = _object_bytes(args[0]) if rank == src else 0
            elif name in ("all_gather", "gather", "all_gather_into_tensor", "reduce_scatter", "reduce_scatter_tensor"):
                sent = _tensor_bytes(args[1])  # (output(s), input)
            else:
                sent = _tensor_bytes(args[0])
            out = fn(*args, **kwargs)
            if name == "barrier":
                received = 0
            elif name in ("all_gather", "all_gather_into_tensor"):
                received = _tensor_bytes(args[0]) - sent  # everyone's tensor, less one's own
            elif name == "all_gather_object":
                received = sum(len(pickle.dumps(o)) for i, o in enumerate(args[0]) if i != rank)
            elif name == "broadcast_object_list":
                received = 0 if sent else _object_bytes(args[0])
            elif name == "broadcast":
                src = kwargs.get("src", args[1] if len(args) > 1 else 0)
                received, sent = (0, sent) if rank == src else (sent, 0)
            elif name == "all_reduce":
                received = sent if world > 1 else 0  # the reduced vector (a ring moves ~2 (P-1)/P of it each way)
            else:
                received = _tensor_bytes(args[0])
            self.calls[name] = self.calls.get(name, 0) + 1
            self.sent += sent
            self.received += received
            return out

        return wrapper

    def snapshot(self) -> dict:
        return {"calls": dict(self.calls), "collectives": sum(self.calls.values()), "sent_bytes": self.sent,
                "received_bytes": self.received}


# ---------------------------------------------------------------------------------------------- processes
def read_rows(path: Path, k: int, start: int, stop: int) -> torch.Tensor:
    """Rows start..stop of a raw float32 (N, k) file, read (not memory-mapped) into a fresh tensor."""
    x = np.fromfile(path, dtype=np.float32, count=(stop - start) * k, offset=start * k * 4)
    return torch.from_numpy(x.reshape(stop - start, k))


def rows_stay(shard: torch.Tensor, inplace: bool) -> list:
    from l2h_lightning import l2h

    return l2h(shard, inplace=inplace, process_group=torch.distributed.group.WORLD).merges.tolist()


def no_group(shard: torch.Tensor, inplace: bool) -> list:
    from l2h_lightning import l2h

    return l2h(shard, inplace=inplace).merges.tolist()


def gather(shard: torch.Tensor, inplace: bool) -> list:
    """The former design: all of every process's logits on every process, the tree on rank 0, merges broadcast."""
    from torchmetrics.utilities.distributed import gather_all_tensors

    from l2h_lightning import l2h

    k = shard.shape[1]
    logits = torch.cat(gather_all_tensors(shard.flatten())).view(-1, k)
    box = [l2h(logits, inplace=inplace).merges.tolist() if torch.distributed.get_rank() == 0 else None]
    del logits
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def worker(rank: int, cfg: dict) -> None:
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    if device.type == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    torch.distributed.init_process_group(cfg["backend"], init_method=f"tcp://127.0.0.1:{cfg['port']}",
                                         rank=rank, world_size=cfg["world"])
    try:
        counter = Counter()
        start, stop = cfg["bounds"][rank], cfg["bounds"][rank + 1]
        shard = read_rows(Path(cfg["path"]), cfg["k"], start, stop).to(device)
        import torchmetrics.utilities.distributed  # noqa: F401  (imported before any timing, as in a training run)

        from l2h_lightning import l2h

        l2h(shard[: min(64, len(shard))].clone() if len(shard) else torch.randn(8, cfg["k"], device=device))  # warm-up
        result = {"rank": rank, "rows": stop - start, "shard_bytes": shard.numel() * shard.element_size(), "designs": {}}
        for design in cfg["designs"]:
            fn = {"rows stay": rows_stay, "gather": gather, "no group": no_group}[design]
            out: dict = {}
            if cfg["mode"] == "timings":
                times = []
                for _ in range(cfg["repeats"]):
                    mine = shard.clone() if cfg["inplace"] else shard
                    torch.distributed.barrier()
                    counter.reset()
                    counter.active = True
                    t0 = time.perf_counter()
                    merges = fn(mine, cfg["inplace"])
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    seconds = time.perf_counter() - t0
                    counter.active = False
                    slowest = torch.tensor([seconds], dtype=torch.float64, device=device)
                    torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
                    times.append(float(slowest))
                    del mine
                out["tree_s"] = statistics.median(times)
                out["tree_s_all"] = times
                out.update(counter.snapshot())
                out["merges"] = merges if rank == 0 else None
                every = [None] * cfg["world"]
                torch.distributed.all_gather_object(every, merges)
                out["same_on_every_process"] = all(m == every[0] for m in every)
            else:
                mine = shard.clone() if cfg["inplace"] else shard
                torch.distributed.barrier()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    fn(mine, cfg["inplace"])
                    torch.cuda.synchronize()
                    out["peak_extra_bytes"] = torch.cuda.max_memory_allocated() - base
                    out["peak_bytes"] = out["peak_extra_bytes"] + base
                else:
                    reset_peak_rss()
                    base = rss_bytes()
                    fn(mine, cfg["inplace"])
                    out["peak_extra_bytes"] = rss_bytes(peak=True) - base
                    out["peak_bytes"] = rss_bytes(peak=True)  # the whole process: python, torch, its shard, ...
                del mine
            result["designs"][design] = out
        Path(cfg["out"], f"{cfg['mode']}_{rank}.json").write_text(json.dumps(result))
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cfg: dict, exact_memory: bool) -> list[dict]:
    import torch.multiprocessing as mp

    out = Path(tempfile.mkdtemp(prefix="run_", dir=SCRATCH))
    cfg = {**cfg, "port": free_port(), "out": str(out)}
    before = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if exact_memory:  # spawned processes inherit the environment: glibc reads this at their start
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        mp.spawn(worker, args=(cfg,), nprocs=cfg["world"], join=True)
    finally:
        if exact_memory:
            if before is None:
                os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
            else:
                os.environ["MALLOC_MMAP_THRESHOLD_"] = before
    results = [json.loads(Path(out, f"{cfg['mode']}_{r}.json").read_text()) for r in range(cfg["world"])]
    for f in out.iterdir():
        f.unlink()
    out.rmdir()
    return results


def bounds(n: int, world: int, uneven: bool) -> list[int]:
    """Row boundaries: equal shards (np.array_split's), or shards proportional to 1, 2, ..., world."""
    weights = np.arange(1, world + 1, dtype=np.float64) if uneven else np.ones(world)
    edges = np.rint(np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * n).astype(int)
    return [int(e) for e in edges]


# ------------------------------------------------------------------------------------------------- parent
def fmt_bytes(b: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{int(b)} B"


def markdown(rows: list[dict]) -> str:
    head = ["design", "processes", "rows per process", "time per tree", "collectives per step",
            "sent per process", "received per process", "peak per process", "peak / all logits", "same tree"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["design"], str(r["processes"]), " / ".join(f"{n:,}" for n in r["rows_per_process"]),
                 f"{r['tree_s']:.2f} s", f"{r['collectives_per_step']:.2f}",
                 fmt_bytes(r["sent_bytes_max"]), fmt_bytes(r["received_bytes_max"]),
                 fmt_bytes(r["peak_bytes_max"]), f"{r['peak_vs_all_logits']:.2f}x",
                 "yes" if r["same_tree"] else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="planted", help="an input family of benchmarks/families.py")
    parser.add_argument("--size", default=None, help="NxK (default 200000x1000; --quick: 20000x200)")
    parser.add_argument("--world-sizes", nargs="+", type=int, default=None,
                        help="process counts (default 1 2, and 4 where the machine has >= 4 cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uneven", action="store_true", help="shard sizes proportional to 1, 2, ..., P")
    parser.add_argument("--inplace", action="store_true", help="both designs call l2h(..., inplace=True)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default cores // P)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backend", default=None, choices=["gloo", "nccl"], help="default gloo (nccl with --device cuda)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20000x200, 1 repeat")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from families import FAMILIES, LANGUAGE_ID_K

    if args.family not in FAMILIES:
        raise SystemExit(f"--family must be one of {sorted(FAMILIES)}, got {args.family!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    backend = args.backend or ("nccl" if args.device == "cuda" else "gloo")
    if backend == "nccl" and args.device != "cuda":
        raise SystemExit("--backend nccl needs --device cuda")
    try:
        n, k = (int(v) for v in (args.size or ("20000x200" if args.quick else "200000x1000")).lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size: expected NxK such as 200000x1000, got {args.size!r}") from None
    if args.family == "language_id":
        k = LANGUAGE_ID_K
    repeats = 1 if args.quick and args.repeats == 3 else args.repeats
    if repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    cores = len(os.sched_getaffinity(0))
    notes = []
    worlds = args.world_sizes
    if worlds is None:
        worlds = [1, 2] if args.device == "cuda" else [1, 2, 4]
        if args.device == "cpu" and cores < 4:
            worlds = [1, 2]
            notes.append(f"4 processes not run: the machine has {cores} cores, so 4 processes would share them and the "
                         "timings would measure the scheduler (pass --world-sizes 1 2 4 to run them anyway)")
    if args.device == "cuda" and args.world_sizes is None:
        gpus = torch.cuda.device_count()
        if backend == "nccl" and gpus < 2:
            worlds = [1]
            notes.append(f"NCCL with {gpus} GPU: 1 process only (NCCL refuses two ranks on one GPU); "
                         "--backend gloo --device cuda runs 2 processes on it (rows stay only)")
        elif backend == "nccl":
            worlds = [w for w in (1, 2, 4) if w <= gpus]
    if min(worlds) < 1:
        raise SystemExit("--world-sizes must be at least 1")
    designs = list(DESIGNS)
    if args.device == "cuda" and backend == "gloo":
        designs = ["rows stay"]
        notes.append("gloo on CUDA tensors: the gather design is not run (gloo has no CUDA all_gather)")
    machine = {
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                    platform.machine()),
        "cores": cores, "torch": torch.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "load_average_start": os.getloadavg(),
    }
    print(f"machine: {machine}", flush=True)
    for note in notes:
        print(f"note: {note}", flush=True)
    if machine["load_average_start"][0] > 0.5 * cores:
        print(f"WARNING: load average {machine['load_average_start'][0]:.1f} on {cores} cores: "
              "the machine is busy, timings will not be representative", flush=True)

    started = time.perf_counter()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = SCRATCH / f"{args.family}_{n}x{k}.f32"
    logits = FAMILIES[args.family](n, k, 0)
    logits.numpy().tofile(path)
    all_bytes = logits.numel() * logits.element_size()
    del logits
    print(f"{args.family} {n} x {k} ({fmt_bytes(all_bytes)}) written in {time.perf_counter() - started:.0f} s", flush=True)
    rows, reference = [], None
    try:
        for world in worlds:
            cfg = {"world": world, "bounds": bounds(n, world, args.uneven), "path": str(path), "k": k,
                   "device": args.device, "backend": backend, "repeats": repeats, "inplace": args.inplace,
                   "threads": args.threads or max(1, cores // world),
                   "designs": designs + (["no group"] if world == 1 else [])}
            t0 = time.perf_counter()
            timed = spawn({**cfg, "mode": "timings"}, exact_memory=False)
            peaks = spawn({**cfg, "mode": "memory"}, exact_memory=True)
            for design in cfg["designs"]:
                t = [r["designs"][design] for r in timed]
                m = [r["designs"][design] for r in peaks]
                merges = t[0]["merges"]
                if reference is None:
                    reference = merges  # the first world size's first design: every other tree must equal it
                row = {
                    "design": design, "processes": world, "threads_per_process": cfg["threads"],
                    "rows_per_process": [r["rows"] for r in timed],
                    "tree_s": t[0]["tree_s"], "tree_s_all": t[0]["tree_s_all"],
                    "collectives": max(x["collectives"] for x in t), "calls": t[0]["calls"],
                    "collectives_per_step": max(x["collectives"] for x in t) / max(1, k - 1),
                    "sent_bytes": [x["sent_bytes"] for x in t], "received_bytes": [x["received_bytes"] for x in t],
                    "sent_bytes_max": max(x["sent_bytes"] for x in t),
                    "received_bytes_max": max(x["received_bytes"] for x in t),
                    "peak_bytes": [x["peak_bytes"] for x in m], "peak_extra_bytes": [x["peak_extra_bytes"] for x in m],
                    "shard_bytes": [r["shard_bytes"] for r in peaks],
                    "same_tree": all(x["same_on_every_process"] for x in t) and merges == reference,
                }
                row["peak_bytes_max"] = max(row["peak_bytes"])
                # the process's data at its peak (its shard plus what it added), as a multiple of all logits
                row["peak_vs_all_logits"] = max(s + e for s, e in zip(row["shard_bytes"], row["peak_extra_bytes"])) / all_bytes
                rows.append(row)
                print(f"{design:>10} P={world}: {row['tree_s']:.2f} s per tree, {row['collectives']} collectives "
                      f"({row['collectives_per_step']:.2f} per step) {row['calls']}, sent {fmt_bytes(row['sent_bytes_max'])}, "
                      f"received {fmt_bytes(row['received_bytes_max'])}, peak {fmt_bytes(row['peak_bytes_max'])} "
                      f"(shard + extra = {row['peak_vs_all_logits']:.2f}x all logits), same tree {row['same_tree']}",
                      flush=True)
            print(f"  [{time.perf_counter() - t0:.0f} s for P={world}]", flush=True)
    finally:
        path.unlink(missing_ok=True)
    machine["load_average_end"] = os.getloadavg()
    table = markdown(rows)
    total = time.perf_counter() - started
    print()
    print(table)
    for note in notes:
        print(f"\n{note}")
    print(f"\ntotal {total:.0f} s; load average {machine['load_average_start']} -> {machine['load_average_end']}")
    out = args.out or (SCRATCH / f"distributed_{args.device}_quick.json" if args.quick
                       else HERE / "results" / f"distributed_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "family": args.family, "n": n, "k": k, "backend": backend,
                               "uneven": args.uneven, "inplace": args.inplace, "repeats": repeats, "notes": notes,
                               "all_logits_bytes": all_bytes, "total_s": total, "rows": rows, "markdown": table,
                               "reference_merges": reference}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
