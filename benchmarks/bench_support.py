"""Cost of bootstrap clade support (`l2h_lightning.explain.clade_support`) against one softmax pass, in one run.

    python benchmarks/bench_support.py                        # planted 50,000 x 1,000, 20 replicates
    python benchmarks/bench_support.py --n-boot 100 --family saturated

Reports the time per replicate (the replicates share one pass over the logits), the extrapolated time for 100, and
one ``torch.softmax(logits, 1).max(1)`` on the same tensor for scale. Writes benchmarks/results/support_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from families import FAMILIES  # noqa: E402

from l2h_lightning import clade_support, l2h  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="planted", choices=sorted(FAMILIES))
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=20)
    args = parser.parse_args()
    logits = FAMILIES[args.family](args.n, args.k, 0)
    softmax = []
    for _ in range(5):
        start = time.perf_counter()
        logits.softmax(1).max(1)
        softmax.append(time.perf_counter() - start)
    tree = l2h(logits)
    start = time.perf_counter()
    support = clade_support(logits, tree, n_boot=args.n_boot)
    seconds = time.perf_counter() - start
    result = {
        "family": args.family, "n": args.n, "k": logits.shape[1], "n_boot": args.n_boot, "seconds": seconds,
        "seconds_per_replicate": seconds / args.n_boot, "seconds_for_100": 100 * seconds / args.n_boot,
        "softmax_s": statistics.median(softmax), "mean_support": float(support.mean()),
    }
    print(json.dumps(result))
    (HERE / "results" / "support_cpu.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
