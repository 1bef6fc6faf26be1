"""Command line: ``python -m l2h_lightning analyze LOGITS ...`` (or ``l2h analyze ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .engine import AGGREGATIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2h", description="L2H hierarchies from saved logits.")
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser(
        "analyze",
        help="build, score and save the L2H tree of a logits file",
        description="Build the L2H tree over the K classes of an (N, K) logits file, score it against targets "
        "if given, write dendrogram.png, tree.json, tree.nwk (and metrics.json) into --out, and print a summary.",
    )
    analyze.add_argument("logits", help="(N, K) logits: .pt, .npy, .npz or .csv")
    analyze.add_argument("--target", help="true class ids (N,), same formats")
    analyze.add_argument("--names", help="class names: a text file with one name per line, or a JSON list")
    analyze.add_argument("--levels", help="ground-truth levels: JSON list of per-class maps (finest first), or CSV "
                         "with one row per class and one column per level")
    analyze.add_argument("--aggregation", default="cluster_mean", choices=AGGREGATIONS)
    analyze.add_argument("--device", default="cpu", help="where to run the engine: cpu or cuda")
    analyze.add_argument("--out", default="l2h_out", help="output folder (default: l2h_out)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 with a one-line message for bad input, no traceback)."""
    args = _parser().parse_args(argv)
    import torch

    from .analysis import analyze, load_array, load_labels, load_levels, load_names, summary

    try:
        if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
            raise ValueError(f"--device must be cpu or cuda, got {args.device!r}")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda, but no CUDA device is available")
        logits = load_array(args.logits, key="logits")
        if logits.ndim != 2:
            raise ValueError(f"{args.logits}: logits must be a 2-D (N, K) table, got shape {tuple(logits.shape)}")
        if not logits.is_floating_point():
            logits = logits.double()
        target = load_labels(args.target) if args.target else None
        names = load_names(args.names) if args.names else None
        truth = load_levels(args.levels) if args.levels else None
        if truth is not None and truth.num_leaves != logits.shape[1]:
            raise ValueError(f"{args.levels}: the levels cover {truth.num_leaves} classes, the logits have {logits.shape[1]}")
        result = analyze(logits.to(args.device), target, names, truth, args.aggregation, args.out)
    except ValueError as err:
        print(f"l2h: error: {err}", file=sys.stderr)
        return 2
    print(summary(result, names))
    print("wrote " + ", ".join(str(p) for p in result["files"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
