"""The engine now against the engine at an earlier commit, side by side in one process: for changes smaller than the
machine's drift.

    python benchmarks/bench_ab.py --base 8fbe3c4                        # every family at 50,000 x 1,000
    python benchmarks/bench_ab.py --base HEAD~1 --families planted --n 200000 --repeats 6

`bench_engine.py` measures each row in a fresh process, minutes apart; on a shared machine the time of one softmax
pass drifts by 20% and more between such runs, so a 10% change of the engine cannot be read from two of them. Here
both versions run on the same logits in the same process, alternating (base, head, head, base, ...), and each
family reports both medians, their ratio, and whether the two trees have the same merges (they must, unless the
change is meant to alter decisions). The base's `l2h_lightning` package is taken from git (`git archive`) and
imported under another name; the head is the working tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_engine import family_shape  # noqa: E402
from families import FAMILIES  # noqa: E402

import l2h_lightning  # noqa: E402


def package_at(commit: str, into: Path):
    """The `l2h_lightning` package as it was at `commit`, imported as ``l2h_base``."""
    archive = subprocess.run(["git", "archive", commit, "l2h_lightning"], cwd=HERE.parent, check=True,
                             capture_output=True).stdout
    tarfile.open(fileobj=BytesIO(archive)).extractall(into, filter="data")
    root = into / "l2h_lightning"
    spec = importlib.util.spec_from_file_location("l2h_base", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["l2h_base"] = module
    spec.loader.exec_module(module)
    return module


def compare(family: str, n: int, k: int, base, repeats: int) -> dict:
    logits = FAMILIES[family](*family_shape(family, n, k), 0)
    runs = {"base": base.l2h, "head": l2h_lightning.l2h}
    times = {name: [] for name in runs}
    trees = {name: fn(logits) for name, fn in runs.items()}  # (warm-up)
    for i in range(repeats):
        for name in ("base", "head") if i % 2 == 0 else ("head", "base"):
            start = time.perf_counter()
            trees[name] = runs[name](logits)
            times[name].append(time.perf_counter() - start)
    base_s, head_s = (statistics.median(times[name]) for name in ("base", "head"))
    return {"family": family, "shape": tuple(logits.shape), "base_ms": 1e3 * base_s, "head_ms": 1e3 * head_s,
            "ratio": head_s / base_s, "same_merges": torch.equal(trees["base"].merges, trees["head"].merges)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a git commit (hash, tag, HEAD~1)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--n", type=int, default=50_000, help="rows")
    parser.add_argument("--k", type=int, default=1000, help="columns (language_id: always 176)")
    parser.add_argument("--repeats", type=int, default=4, help="timed runs of each version, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = package_at(args.base, Path(tmp))
        print(f"base {args.base} against the working tree; torch {torch.__version__}, {torch.get_num_threads()} threads")
        print("| family | N x K | base ms | head ms | head / base | same merges |")
        print("|---|---|---|---|---|---|")
        for family in args.families:
            row = compare(family, args.n, args.k, base, args.repeats)
            n, k = row["shape"]
            print(f"| {family} | {n:,} x {k:,} | {row['base_ms']:,.0f} | {row['head_ms']:,.0f} | {row['ratio']:.2f} | "
                  f"{'yes' if row['same_merges'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
