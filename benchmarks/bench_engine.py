"""Benchmark the L2H engine on every input family of `families.py`, against one softmax pass of the same run.

    python benchmarks/bench_engine.py --contention            # CPU: every family, 50,000 and 200,000 x 1,000
    python benchmarks/bench_engine.py --quick --contention    # a smoke run at small sizes (about a minute)
    python benchmarks/bench_engine.py --device cuda           # GPU rows (no thread or contention columns)
    python benchmarks/bench_engine.py --families planted saturated --sizes 50000x1000 --repeats 3

Every measurement runs in a fresh process, on logits made once per row and shared through a temporary file:

- timings: the median of >= 5 ``torch.softmax(logits, 1).max(1)`` passes, then the engine's median
  (``--repeats`` calls, fewer but at least 3 where they would take over ``--budget`` seconds) with torch's
  default threads and with ``torch.set_num_threads(1)``;
- with ``--contention``: the same timings again while one busy process (a pure-Python spin loop, not pinned)
  occupies one core: started before that process, killed after it;
- memory: the peak resident memory beyond the logits (VmHWM after resetting it through /proc/self/clear_refs, with
  ``MALLOC_MMAP_THRESHOLD_`` so that freed blocks leave the process at once) for ``inplace=False``,
  ``inplace=True`` and float16 input, each as a fraction of the bytes of the logits it was given (so a full
  float32 copy of float16 logits would show as at least 2.0);
- reference: each family at a small size (``--reference-size``) against ``tests/reference.py``'s
  ``reference_l2h_exact`` (SPEC §1 in high precision): identical merges, and the smallest decision margin.

Columns: predicted = clusters that are some row's argmax; softmax ms / engine ms = medians (default threads);
x softmax = engine / softmax; 1 thread ms = the engine under ``torch.set_num_threads(1)``; mem copy / mem inplace /
mem fp16 = peak beyond the logits for ``inplace=False``, ``inplace=True`` and float16 input (a fraction of the bytes
of the logits passed in); busy core = engine time with the busy process / without it, for default threads and for
one thread (the threads table gives the four times).

The language-id family has K = 176 (the model's labels): its rows use N from ``--sizes`` and K = 176.
Prints Markdown tables (ready for the README) and writes JSON (default ``benchmarks/results/engine_<device>.json``;
``--quick`` writes under the system's temporary directory instead, so that smoke runs never replace results).
Timings are only meaningful on a quiet machine: the load average before and after is printed and saved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from families import FAMILIES, LANGUAGE_ID_K  # noqa: E402

from l2h_lightning import l2h  # noqa: E402

SIZES = ["50000x1000", "200000x1000"]
QUICK_SIZES = ["5000x200"]
REFERENCE_SIZE = "1000x100"
QUICK_REFERENCE_SIZE = "300x30"
SCRATCH = Path(tempfile.gettempdir()) / "l2h_bench_engine"


# ------------------------------------------------------------------------------------------------- helpers
def family_shape(family: str, n: int, k: int) -> tuple[int, int]:
    return (n, LANGUAGE_ID_K) if family == "language_id" else (n, k)


def logits_path(family: str, n: int, k: int) -> Path:
    return SCRATCH / f"{family}_{n}x{k}.npy"


def load_logits(family: str, n: int, k: int, device: str) -> torch.Tensor:
    """The row's logits: made by the first process that needs them, read back from the file by the others."""
    path = logits_path(family, n, k)
    if path.exists():
        logits = torch.from_numpy(np.load(path))
    else:
        logits = FAMILIES[family](n, k, 0)
        SCRATCH.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.npy")
        np.save(tmp, logits.numpy())
        tmp.replace(path)
    return logits.to(device)


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


def median_time(fn, device: str, repeats: int, budget: float | None = None, least: int = 3) -> tuple[float, int]:
    """(median seconds, calls): `repeats` calls, or fewer (not under `least`) where they would exceed `budget` s."""
    times: list[float] = []
    while len(times) < repeats:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        if budget is not None and len(times) == 1:
            repeats = max(min(repeats, least), min(repeats, int(budget / max(times[0], 1e-9))))
    return statistics.median(times), len(times)


# --------------------------------------------------------------------------------- child processes' work
def timings(family: str, n: int, k: int, device: str, repeats: int, budget: float) -> dict:
    """One softmax pass and the engine (default threads, then one thread), medians, in this process."""
    logits = load_logits(family, n, k, device)
    conf, assign = torch.softmax(logits, 1).max(1)
    result = {
        "predicted_clusters": int(torch.unique(assign).numel()),
        "mean_confidence": float(conf.mean()),
        "confidence_one": float((conf == 1).float().mean()),  # rows whose float32 softmax rounds to 1
    }
    del conf, assign
    l2h(logits)  # warm-up (first calls load kernels)
    threads = torch.get_num_threads()
    result["threads"] = threads
    result["softmax_s"], result["softmax_calls"] = median_time(lambda: torch.softmax(logits, 1).max(1), device, max(repeats, 5))
    result["engine_s"], result["engine_calls"] = median_time(lambda: l2h(logits), device, repeats, budget)
    if device == "cpu":
        torch.set_num_threads(1)
        try:
            result["engine_1thread_s"], result["engine_1thread_calls"] = median_time(lambda: l2h(logits), device, repeats, budget)
        finally:
            torch.set_num_threads(threads)
    return result


def peak_beyond(fn, device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    reset_peak_rss()
    base = rss_bytes()
    fn()
    return rss_bytes(peak=True) - base


def memory(family: str, n: int, k: int, device: str) -> dict:
    """Peaks beyond the logits, as fractions of the logits' bytes: inplace=False, float16, inplace=True."""
    logits = load_logits(family, n, k, device)
    nbytes = logits.numel() * logits.element_size()
    l2h(logits[:64].clone())  # load the kernels' code before measuring
    l2h(logits[:64].clone(), inplace=True)
    l2h(logits[:64].half())
    out: dict = {}
    trees: dict = {}
    out["memory_copy"] = peak_beyond(lambda: trees.setdefault("copy", l2h(logits)), device) / nbytes
    half = logits.half()
    out["memory_float16"] = peak_beyond(lambda: l2h(half), device) / (half.numel() * half.element_size())
    del half
    out["memory_inplace"] = peak_beyond(lambda: trees.setdefault("inplace", l2h(logits, inplace=True)), device) / nbytes
    out["inplace_same_tree"] = bool(torch.equal(trees["copy"].merges, trees["inplace"].merges))
    out["logits_bytes"] = nbytes
    return out


def reference(family: str, n: int, k: int) -> dict:
    """The engine against SPEC §1 computed in high precision (slow: small sizes only)."""
    from reference import reference_l2h_exact

    logits = FAMILIES[family](n, k, 0)
    start = time.perf_counter()
    merges, margins, _ = reference_l2h_exact(logits.double().numpy())
    seconds = time.perf_counter() - start
    return {
        "reference_s": seconds,
        "same_merges": [list(m) for m in merges] == l2h(logits).merges.tolist(),
        "min_margin": min(margins) if margins else None,
    }


# ------------------------------------------------------------------------------------------------- parent
def child(args: list[str], timeout: float | None = None, exact_memory: bool = False) -> dict | None:
    env = dict(os.environ)
    if exact_memory:
        # Freed blocks go straight back to the OS, so that the resident size is the memory in use (glibc otherwise
        # keeps freed blocks of sizes it has seen, and one step's peak hides in the last one's leftovers). This
        # slows allocation down, so timings run in other processes without it.
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_core() -> subprocess.Popen:
    """One process that keeps one core busy (a pure-Python spin loop, no affinity) until it is killed, or until this
    process ends (it checks every few milliseconds whether its parent changed: a benchmark killed from outside
    must not leave it spinning under the next one)."""
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(100_000): pass"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    time.sleep(0.5)  # let it start spinning
    return proc


def contended(args: list[str]) -> dict:
    spinner = busy_core()
    try:
        return child(args)
    finally:
        spinner.kill()
        spinner.wait()


def machine_info(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration):
        mem = None
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": mem,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "load_average_start": os.getloadavg(),
    }


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:+.0f}%"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(rows: list[dict], refs: list[dict], device: str, contention: bool) -> str:
    head = ["family", "N x K", "predicted", "softmax ms", "engine ms", "x softmax"]
    if device == "cpu":
        head += ["1 thread ms"]
    head += ["mem copy", "mem inplace", "mem fp16"]
    if contention:
        head += ["busy core: default threads", "busy core: 1 thread"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["family"], f"{r['n']:,} x {r['k']:,}", f"{r['predicted_clusters']:,}", ms(r["softmax_s"]),
                 ms(r["engine_s"]), ratio(r["ratio_to_softmax"])]
        if device == "cpu":
            cells += [ms(r.get("engine_1thread_s"))]
        cells += [pct(r["memory_copy"]), pct(r["memory_inplace"]), pct(r["memory_float16"])]
        if contention:
            cells += [ratio(r.get("contended_ratio")), ratio(r.get("contended_1thread_ratio"))]
        lines.append("| " + " | ".join(cells) + " |")
    if device == "cpu":
        lines += ["", "| family | N x K | threads | engine ms, default threads | engine ms, 1 thread"
                  + (" | busy core: default threads | busy core: 1 thread |" if contention else " |"),
                  "|---|---|---|---|---" + ("|---|---|" if contention else "|")]
        for r in rows:
            cells = [r["family"], f"{r['n']:,} x {r['k']:,}", str(r["threads"]), ms(r["engine_s"]), ms(r.get("engine_1thread_s"))]
            if contention:
                cells += [ms(r.get("contended_engine_s")), ms(r.get("contended_engine_1thread_s"))]
            lines.append("| " + " | ".join(cells) + " |")
    if refs:
        lines += ["", "| family | N x K | same merges as the exact reference | smallest margin | reference s |",
                  "|---|---|---|---|---|"]
        for r in refs:
            same = "timed out" if r.get("same_merges") is None else ("yes" if r["same_merges"] else "NO")
            margin = "-" if r.get("min_margin") is None else f"{r['min_margin']:.1e}"
            lines.append(f"| {r['family']} | {r['n']:,} x {r['k']:,} | {same} | {margin} | "
                         f"{'-' if r.get('reference_s') is None else format(r['reference_s'], '.1f')} |")
    return "\n".join(lines)


def parse_size(size: str) -> tuple[int, int]:
    try:
        n, k = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes: expected NxK such as 50000x1000, got {size!r}") from None
    if n < 1 or k < 2:
        raise SystemExit(f"--sizes: N must be >= 1 and K >= 2, got {size!r}")
    return n, k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--sizes", nargs="+", default=None, help=f"NxK (default {' '.join(SIZES)})")
    parser.add_argument("--repeats", type=int, default=5, help="engine timings per median (softmax: at least 5)")
    parser.add_argument("--budget", type=float, default=5.0,
                        help="seconds per engine median: fewer repeats (at least 3) where --repeats would take longer")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--contention", action="store_true", help="also time with one busy process on a core")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: sizes {QUICK_SIZES}, reference {QUICK_REFERENCE_SIZE}")
    parser.add_argument("--reference-size", default=None, help=f"NxK for the exact reference check (default {REFERENCE_SIZE}; 'none' skips it)")
    parser.add_argument("--reference-timeout", type=float, default=120.0, help="seconds per family")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/engine_<device>.json)")
    parser.add_argument("--child", choices=["timings", "memory", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--row", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    if args.child:
        family, n, k = args.row[0], int(args.row[1]), int(args.row[2])
        if args.child == "timings":
            print(json.dumps(timings(family, n, k, args.device, args.repeats, args.budget)))
        elif args.child == "memory":
            print(json.dumps(memory(family, n, k, args.device)))
        else:
            print(json.dumps(reference(family, n, k)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")

    sizes = [parse_size(s) for s in (args.sizes or (QUICK_SIZES if args.quick else SIZES))]
    ref_size = args.reference_size or (QUICK_REFERENCE_SIZE if args.quick else REFERENCE_SIZE)
    machine = machine_info(args.device)
    print(f"machine: {machine}", flush=True)
    if machine["load_average_start"][0] > 0.5 * machine["cores"]:
        print(f"WARNING: load average {machine['load_average_start'][0]:.1f} on {machine['cores']} cores: "
              "the machine is busy, timings will not be representative", flush=True)
    started = time.perf_counter()
    rows, refs = [], []
    for family in args.families:
        for n0, k0 in sizes:
            n, k = family_shape(family, n0, k0)
            row_start = time.perf_counter()
            common = ["--row", family, str(n), str(k), "--device", args.device, "--repeats", str(args.repeats),
                      "--budget", str(args.budget)]
            row = {"family": family, "n": n, "k": k, "device": args.device}
            try:
                row.update(child(["--child", "timings", *common]))
                row["ratio_to_softmax"] = row["engine_s"] / row["softmax_s"]
                if args.contention:
                    busy = contended(["--child", "timings", *common])
                    row["contended_softmax_s"] = busy["softmax_s"]
                    row["contended_engine_s"] = busy["engine_s"]
                    row["contended_ratio"] = busy["engine_s"] / row["engine_s"]
                    if "engine_1thread_s" in busy:
                        row["contended_engine_1thread_s"] = busy["engine_1thread_s"]
                        row["contended_1thread_ratio"] = busy["engine_1thread_s"] / row["engine_1thread_s"]
                row.update(child(["--child", "memory", *common], exact_memory=True))
            finally:
                logits_path(family, n, k).unlink(missing_ok=True)
            row["wall_s"] = time.perf_counter() - row_start
            rows.append(row)
            print(f"{family:>16} {n:>8} x {k:<5} softmax {ms(row['softmax_s']):>8} ms  engine {ms(row['engine_s']):>9} ms "
                  f"({ratio(row['ratio_to_softmax'])})  1 thread {ms(row.get('engine_1thread_s')):>9} ms  "
                  f"mem {pct(row['memory_copy'])} / inplace {pct(row['memory_inplace'])} / fp16 {pct(row['memory_float16'])}"
                  + (f"  busy core {ratio(row.get('contended_ratio'))} / 1 thread {ratio(row.get('contended_1thread_ratio'))}"
                     if args.contention else "")
                  + f"  [{row['wall_s']:.0f} s; {len(rows)}/{len(args.families) * len(sizes)} rows after "
                    f"{time.perf_counter() - started:.0f} s]", flush=True)
    if ref_size.lower() != "none":
        rn, rk = parse_size(ref_size)
        for family in args.families:
            n, k = family_shape(family, rn, rk)
            ref = child(["--child", "reference", "--row", family, str(n), str(k)], timeout=args.reference_timeout)
            refs.append({"family": family, "n": n, "k": k, **(ref or {"same_merges": None})})
            print(f"reference {family:>16} {n} x {k}: {refs[-1]}", flush=True)
    machine["load_average_end"] = os.getloadavg()
    table = markdown(rows, refs, args.device, args.contention)
    print()
    print(table)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s; load average {machine['load_average_start']} -> {machine['load_average_end']}")
    out = args.out or (SCRATCH / f"engine_{args.device}_quick.json" if args.quick else HERE / "results" / f"engine_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                               "total_s": total, "rows": rows, "reference": refs, "markdown": table}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
