"""Why the engine keeps exp and log away from some arguments: their time per entry there, against ordinary ones.

    python benchmarks/bench_slow_paths.py

torch's vectorised exp and log on CPU leave their fast path for arguments whose result is near or beyond the dtype's
range (exp near float64's smallest normal e^-708, below it and at -inf; float32's exp below about -87; log of 0 and
of negative numbers) and for those are many times slower per entry. The engine clamps before it takes them
(`l2h_lightning/masked_softmax.py`: the log domain clamps at -700 in float64, -80 in float32, and takes logs of clamped
values). One thread, a 262,144-entry block (a log-domain buffer's size at K = 1,000), medians of 15.
"""

from __future__ import annotations

import statistics
import time

import torch

CASES = [  # (function, dtype, ordinary argument, arguments the engine avoids)
    ("exp", torch.float64, -100.0, [-700.0, -705.0, -708.0, -709.0, -745.0, -1e4, -float("inf")]),
    ("exp", torch.float32, -50.0, [-80.0, -87.0, -88.0, -104.0, -float("inf")]),
    ("log", torch.float64, 0.5, [0.0, -3.0, -float("inf")]),
    ("log", torch.float32, 0.5, [0.0, -3.0, -float("inf")]),
]


def per_entry_ns(fn: str, dtype: torch.dtype, value: float, repeats: int = 15) -> float:
    x = torch.full((256, 1024), value, dtype=dtype)
    out = torch.empty_like(x)
    op = getattr(torch, fn)
    op(x, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        op(x, out=out)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / x.numel() * 1e9


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread; ns per entry, and as a multiple of the ordinary argument's")
    for fn, dtype, ordinary, avoided in CASES:
        base = per_entry_ns(fn, dtype, ordinary)
        cells = ", ".join(f"{v:g}: {per_entry_ns(fn, dtype, v) / base:.1f}x" for v in avoided)
        print(f"{fn} {str(dtype).removeprefix('torch.')}: {ordinary:g}: {base:.2f} ns; {cells}")


if __name__ == "__main__":
    main()
