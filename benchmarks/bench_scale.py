"""The paper's largest run on one machine: ``l2h analyze`` on an (N, K) float32 .npy far larger than one copy in memory.

    python benchmarks/bench_scale.py                          # 2,700,000 x 1,103 (iNaturalist 2021: 11.9 GB)
    python benchmarks/bench_scale.py --n 200000 --k 1103      # a quick check

Writes planted logits (benchmarks/families.py) chunk by chunk into ``--file`` (default /tmp/l2h_scale_NxK.npy, reused
when it exists), then runs ``python -m l2h_lightning analyze FILE --out DIR`` in a fresh process and reports its wall
time and its peak resident memory (the child's ru_maxrss) as a multiple of the logits' size. The CLI memory-maps the
file copy-on-write and lets the engine work in place, so the peak should stay near one copy of the logits.
Prints one JSON line and writes benchmarks/results/scale_NxK_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from families import FAMILIES  # noqa: E402


def write_logits(path: Path, n: int, k: int, chunk: int = 100_000) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    for s in range(0, n, chunk):
        m = min(n, s + chunk) - s
        out[s : s + m] = FAMILIES["planted"](m, k, s).numpy()
    out.flush()
    del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_700_000)
    parser.add_argument("--k", type=int, default=1103)
    parser.add_argument("--file", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/l2h_scale_out"))
    args = parser.parse_args()
    path = args.file or Path(f"/tmp/l2h_scale_{args.n}x{args.k}.npy")
    if not path.exists():
        start = time.perf_counter()
        write_logits(path, args.n, args.k)
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s", flush=True)
    size = args.n * args.k * 4
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "l2h_lightning", "analyze", str(path), "--out", str(args.out)],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode:
        sys.exit(f"l2h analyze failed ({run.returncode}):\n{run.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result = {
        "n": args.n, "k": args.k, "logits_gb": size / 1e9, "analyze_s": seconds,
        "peak_rss_gb": peak / 1e9, "peak_vs_logits": peak / size,
        "machine": {"cpu": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "cli_output": run.stdout.strip().splitlines()[:3],
    }
    print(json.dumps(result))
    out = HERE / "results" / f"scale_{args.n}x{args.k}_cpu.json"
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
