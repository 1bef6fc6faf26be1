"""Cost of bootstrap clade support (`l2h_lightning.explain.clade_support`) against one softmax pass, in one run.

    python benchmarks/bench_support.py                        # planted 50,000 x 1,000, 100 replicates
    python benchmarks/bench_support.py --n-boot 100 --family saturated

Times what a user calls, ``clade_support(logits, n_boot=B)``: one pass over the logits, the tree, then the B
replicates (which reuse the answers of groups an earlier tree formed). Reports the whole call, the time per tree
(B + 1 of them), and one ``torch.softmax(logits, 1).max(1)`` on the same tensor for scale. Writes
benchmarks/results/support_FAMILY_cpu.json.
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

from l2h_lightning import clade_support  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="planted", choices=sorted(FAMILIES))
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=100)
    args = parser.parse_args()
    logits = FAMILIES[args.family](args.n, args.k, 0)
    softmax = []
    for _ in range(5):
        start = time.perf_counter()
        logits.softmax(1).max(1)
        softmax.append(time.perf_counter() - start)
    start = time.perf_counter()
    support = clade_support(logits, n_boot=args.n_boot)
    seconds = time.perf_counter() - start
    result = {
        "family": args.family, "n": args.n, "k": logits.shape[1], "n_boot": args.n_boot, "seconds": seconds,
        "seconds_per_tree": seconds / (args.n_boot + 1),
        "softmax_s": statistics.median(softmax), "mean_support": float(support.mean()),
    }
    print(json.dumps(result))
    (HERE / "results" / f"support_{args.family}_cpu.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
