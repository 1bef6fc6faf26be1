"""Benchmark the L2H engine against one softmax pass and the slow reference, in one run.

    python benchmarks/bench_engine.py                 # CPU, all sizes (a few minutes)
    python benchmarks/bench_engine.py --device cuda   # the same on a GPU
    python benchmarks/bench_engine.py --sizes 10000x100 50000x1000 --repeats 3

Logits have a planted three-level hierarchy (classes in groups of 10, groups of 10 groups), calibrated to about 80%
top-1 accuracy and 0.8 mean confidence. Each size runs in fresh processes: one for the timings, one for the peak
memory (with an allocator setting that makes resident memory exact, but allocation slower).
For each size: the engine's median time, one ``softmax(logits, 1).max(1)`` on the same tensor, their ratio, the
peak memory beyond the logits, and, where it finishes within `--reference-timeout` seconds, the slow reference of
``tests/reference.py`` with the speed-up over it and a check that the merges are identical.
Prints a table and writes JSON (``benchmarks/results/engine_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from l2h_lightning import l2h  # noqa: E402

SIZES = ["10000x100", "5000x1000", "50000x1000", "200000x1000", "20000x10000"]


def planted_logits(n: int, k: int, noise: float, scale: float, device: str, seed: int = 0) -> torch.Tensor:
    """(n, k) float32 logits: scale * (similarity of the true class to each class + Gaussian noise)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    cls = torch.arange(k, device=device)
    sim = torch.eye(k, device=device)
    for width, level in ((10, 0.5), (100, 0.25)):
        same = (cls[:, None] // width) == (cls[None, :] // width)
        sim = torch.maximum(sim, level * same.float())
    out = torch.empty(n, k, device=device)
    step = max(1, (1 << 20) // k)
    for s in range(0, n, step):  # in chunks, so that making the logits does not set the peak memory
        m = min(n, s + step) - s
        y = torch.randint(k, (m,), generator=gen, device=device)
        out[s : s + m] = scale * (sim[y] + noise * torch.randn(m, k, generator=gen, device=device))
    return out


def calibrate(k: int, device: str, acc: float = 0.8, conf: float = 0.8) -> tuple[float, float]:
    """Noise for the target top-1 accuracy, then scale for the target mean confidence (bisection, 2,000 points)."""

    truth = planted_truth(2000, k, device, seed=123)

    def measure(noise: float, scale: float) -> tuple[float, float]:
        c, a = planted_logits(2000, k, noise, scale, device, seed=123).softmax(1).max(1)
        return float((a == truth).float().mean()), float(c.mean())

    lo, hi = 0.01, 2.0
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if measure(mid, 1.0)[0] > acc else (lo, mid)
    noise = (lo + hi) / 2
    lo, hi = 0.1, 200.0
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if measure(noise, mid)[1] < conf else (lo, mid)
    return noise, (lo + hi) / 2


def planted_truth(n: int, k: int, device: str, seed: int = 0) -> torch.Tensor:
    """The true classes `planted_logits` drew (same generator sequence)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    ys = []
    step = max(1, (1 << 20) // k)
    for s in range(0, n, step):
        m = min(n, s + step) - s
        ys.append(torch.randint(k, (m,), generator=gen, device=device))
        torch.randn(m, k, generator=gen, device=device)
    return torch.cat(ys)


def rss_bytes(peak: bool = False) -> int:
    """Resident memory now, or its high-water mark since `reset_peak_rss` (Linux)."""
    field = "VmHWM:" if peak else "VmRSS:"
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(n: int, k: int, noise: float, scale: float, device: str) -> dict:
    """Runs in a fresh process whose allocator returns freed blocks at once: the engine's peak beyond the logits."""
    logits = planted_logits(n, k, noise, scale, device)
    l2h(logits[:64, :])  # load the kernels' code before measuring
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        l2h(logits)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        reset_peak_rss()
        base = rss_bytes()
        l2h(logits)
        peak = rss_bytes(peak=True) - base
    return {"peak_extra_memory_vs_logits": peak / (logits.numel() * logits.element_size())}


def timings(n: int, k: int, noise: float, scale: float, device: str, repeats: int) -> dict:
    """Runs in a fresh process with the usual allocator: medians of the engine and of one softmax pass."""
    logits = planted_logits(n, k, noise, scale, device)
    conf, assign = logits.softmax(1).max(1)
    result = {
        "n": n, "k": k, "device": device,
        "top1_accuracy": float((assign == planted_truth(n, k, device)).float().mean()),
        "mean_confidence": float(conf.mean()),
        "merges": l2h(logits).merges.tolist(),
    }
    del conf, assign
    result["softmax_max_s"] = timed(lambda: logits.softmax(1).max(1), device, max(repeats, 5))
    result["engine_s"] = timed(lambda: l2h(logits), device, repeats)
    result["ratio_to_softmax"] = result["engine_s"] / result["softmax_max_s"]
    torch.save(logits.cpu(), f"/tmp/l2h_bench_{n}x{k}.pt")
    return result


def reference_run(n: int, k: int) -> dict:
    from reference import reference_l2h

    logits = torch.load(f"/tmp/l2h_bench_{n}x{k}.pt")
    start = time.perf_counter()
    merges, _ = reference_l2h(logits.double().numpy())
    return {"reference_s": time.perf_counter() - start, "merges": [list(m) for m in merges]}


def child(args: list[str], timeout: float | None, exact_memory: bool = False) -> dict | None:
    env = dict(os.environ)
    if exact_memory:
        # Freed blocks go straight back to the OS, so that the resident size is the memory in use (glibc otherwise
        # keeps freed blocks of sizes it has seen, and one step's peak hides in the last one's leftovers). This
        # slows allocation down, so timings run in another process without it.
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        out = subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, check=True, env=env
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="NxK, e.g. 50000x1000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/engine_<device>.json)")
    parser.add_argument("--memory", nargs=4, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--timings", nargs=4, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--reference", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        n, k, noise, scale = args.memory
        print(json.dumps(peak_memory(int(n), int(k), noise, scale, args.device)))
        return
    if args.timings:
        n, k, noise, scale = args.timings
        print(json.dumps(timings(int(n), int(k), noise, scale, args.device, args.repeats)))
        return
    if args.reference:
        print(json.dumps(reference_run(*args.reference)))
        return

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
    }
    print(f"machine: {machine}")
    header = f"{'N':>8} {'K':>6} {'acc':>5} {'conf':>5} {'softmax':>9} {'engine':>9} {'ratio':>6} {'mem':>5} {'reference':>10} {'speed-up':>9} same"
    print(header)
    rows = []
    for size in args.sizes:
        n, k = (int(v) for v in size.lower().split("x"))
        noise, scale = calibrate(k, args.device)
        size_args = [str(n), str(k), str(noise), str(scale), "--device", args.device, "--repeats", str(args.repeats)]
        row = child(["--timings", *size_args], None)
        row.update(child(["--memory", *size_args], None, exact_memory=True))
        ref = child(["--reference", str(n), str(k)], args.reference_timeout)
        merges = row.pop("merges")
        if ref is not None:
            row["reference_s"] = ref["reference_s"]
            row["speedup_vs_reference"] = ref["reference_s"] / row["engine_s"]
            row["same_merges_as_reference"] = ref["merges"] == merges
        Path(f"/tmp/l2h_bench_{n}x{k}.pt").unlink(missing_ok=True)
        rows.append(row)
        print(
            f"{n:>8} {k:>6} {row['top1_accuracy']:>5.2f} {row['mean_confidence']:>5.2f} "
            f"{row['softmax_max_s'] * 1e3:>7.1f}ms {row['engine_s'] * 1e3:>7.1f}ms {row['ratio_to_softmax']:>5.2f}x "
            f"{row['peak_extra_memory_vs_logits']:>4.2f}x "
            + (
                f"{row['reference_s']:>9.1f}s {row['speedup_vs_reference']:>8.0f}x {row['same_merges_as_reference']}"
                if ref is not None
                else f"{'> ' + str(int(args.reference_timeout)) + 's':>10} {'-':>9} -"
            ),
            flush=True,
        )
    out = args.out or HERE / "results" / f"engine_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
