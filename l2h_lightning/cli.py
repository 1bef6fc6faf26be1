"""Command line: ``python -m l2h_lightning analyze LOGITS ...`` (or ``l2h analyze ...``).

Exit codes: 0 everything written; 1 some output could not be written (the others were; one line per failure),
or an unexpected internal error; 2 bad input or usage (one line, no traceback).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every process reads only its own block of rows and the
processes build the tree together; process 0 writes the files and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .engine import AGGREGATIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2h", description="L2H hierarchies from saved logits.")
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser(
        "analyze",
        help="build, score and save the L2H tree of a logits file",
        description="Build the L2H tree over the K classes of an (N, K) logits file, score it against targets "
        "if given, explain it against --levels, write tree.json, tree.nwk, tree.html, dendrogram.png (with "
        "--target metrics.json, with --levels surprises.json; cuts.json) into --out, and print a summary. "
        "Exit codes: 0 all written, 1 an output failed (the others are written), 2 bad input. Under torchrun "
        "every process reads only its own rows and process 0 writes.",
    )
    analyze.add_argument("logits", help="(N, K) floating-point logits: .pt, .npy (memory-mapped), .npz or .csv")
    analyze.add_argument("--target", help="true class ids (N,), same formats")
    analyze.add_argument("--names", help="class names: a text file with one name per line, or a JSON list")
    analyze.add_argument("--levels", help="ground-truth levels: JSON list of per-class maps (finest first), or CSV "
                         "with one row per class and one column per level")
    analyze.add_argument("--group-names", help="names of the groups of the coarsest --levels level (text file, one "
                         "per line, or a JSON list), for the legend")
    analyze.add_argument("--aggregation", default="cluster_mean", choices=AGGREGATIONS,
                         help="the group score that picks whom to merge next (default: cluster_mean)")
    analyze.add_argument("--support", type=_count, default=0, metavar="N", help="clade support from N bootstrap "
                         "replicates (about N more engine runs; default 0: none)")
    analyze.add_argument("--seed", type=int, default=0, help="seed of the bootstrap replicates (default 0)")
    analyze.add_argument("--surprises", type=_count, default=20, metavar="N", help="with --levels: how many of the "
                         "most surprising merges to write to surprises.json (default 20; the top 5 are printed)")
    analyze.add_argument("--device", default="cpu", help="where to run the engine: cpu, cuda or cuda:i")
    analyze.add_argument("--out", default="l2h_out", help="output folder (default: l2h_out)")
    analyze.add_argument("--traceback", action="store_true", help="show the traceback of an internal error")
    return parser


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


class _Distributed:
    """The process group torchrun asks for (WORLD_SIZE > 1), or a stand-in for one process."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.group: Any = None
        self.device = device
        if self.world > 1:
            import torch
            import torch.distributed as dist

            if device.startswith("cuda"):
                local = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = f"cuda:{local}"
                torch.cuda.set_device(local)
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
            self.group = dist.group.WORLD

    @property
    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.world) if self.group is not None else None

    def agree(self, error: str | None) -> None:
        """Raise the first process's error on every process (all must call it at the same point)."""
        if self.group is None:
            if error:
                raise ValueError(error)
            return
        import torch.distributed as dist

        errors: list[str | None] = [None] * self.world
        dist.all_gather_object(errors, error, group=self.group)
        for rank, message in enumerate(errors):
            if message:
                raise ValueError(f"process {rank} of {self.world}: {message}")

    def total(self, *sizes: int) -> list[int]:
        if self.group is None:
            return list(sizes)
        import torch
        import torch.distributed as dist

        x = torch.tensor(sizes, dtype=torch.long, device=self.device)
        dist.all_reduce(x, group=self.group)
        return x.tolist()

    def close(self) -> None:
        if self.group is not None:
            import torch.distributed as dist

            dist.destroy_process_group()


def _option(option: str, path: str, load: Any, **kwargs: Any) -> Any:
    """`load(path)`, its ValueError message prefixed with the option that named the file."""
    try:
        return load(path, **kwargs)
    except ValueError as err:
        raise ValueError(f"{option} {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # argparse's usage errors (2) and --help (0), as a return value
        return int(exit.code or 0)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning
            return _analyze(args)
    except KeyboardInterrupt:
        print("l2h: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.traceback:
            raise
        print(f"l2h: error: internal error ({type(err).__name__}: {err}); rerun with --traceback to see where",
              file=sys.stderr)
        return 1


def _analyze(args: argparse.Namespace) -> int:
    import torch

    from .analysis import analyze, check_out_dir, load_labels, load_levels, load_logits, load_names, summary

    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        return _error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return _error("--device cuda, but no CUDA device is available")
    dist = _Distributed(args.device)
    if dist.rank != 0:
        warnings.simplefilter("ignore")  # every process computes the same numbers: process 0 says it once
    try:
        error = None
        try:
            out = _option("--out", args.out, check_out_dir) if dist.rank == 0 else None
            logits = _option("--logits", args.logits, load_logits, shard=dist.shard)
            K = logits.shape[1]
            target = _option("--target", args.target, load_labels, shard=dist.shard) if args.target else None
            names = _option("--names", args.names, load_names) if args.names else None
            truth = _option("--levels", args.levels, load_levels) if args.levels else None
            group_names = _option("--group-names", args.group_names, load_names) if args.group_names else None
            _check(args, K, target, names, truth, group_names)
        except ValueError as err:
            error = str(err)
        dist.agree(error)
        rows, labels = dist.total(logits.shape[0], -1 if target is None else target.shape[0])
        if target is not None and labels != rows:
            raise ValueError(f"--target {args.target}: has {labels} labels but the logits have N = {rows} rows")

        def reload() -> Any:  # the logits as in the file, after the engine overwrote its copy
            return load_logits(args.logits, shard=dist.shard).to(dist.device)

        owned = [logits.to(dist.device)]
        del logits  # analyze holds the only reference, so the overwritten copy is freed once the tree is built
        result = analyze(
            owned.pop(), target, names, truth, args.aggregation, out,
            group_names=group_names, inplace=True, process_group=dist.group,
            support=args.support, seed=args.seed, surprises=args.surprises, reload=reload,
        )
    except ValueError as err:
        return _error(err) if dist.rank == 0 else 2
    finally:
        dist.close()
    if dist.rank != 0:
        return 0
    print(summary(result, names))
    if result["files"]:
        print("wrote " + ", ".join(str(p) for p in result["files"]))
    for name, reason in result["failures"].items():
        what = f"write {out / name}" if "." in name else f"compute the {name}"
        print(f"l2h: error: could not {what}: {reason}", file=sys.stderr)
    return 1 if result["failures"] else 0


def _check(args: argparse.Namespace, K: int, target: Any, names: Any, truth: Any, group_names: Any) -> None:
    """What the files must agree on, each failure named by the option that gave the file."""
    if names is not None and len(names) != K:
        raise ValueError(f"--names {args.names}: has {len(names)} names but the logits have K = {K} columns")
    if truth is not None and truth.num_leaves != K:
        raise ValueError(f"--levels {args.levels}: the levels cover {truth.num_leaves} classes, the logits have {K}")
    if truth is not None and target is not None and target.numel() and int(target.max()) >= K:
        raise ValueError(f"--target {args.target}: has class id {int(target.max())}, but --levels covers {K} classes")
    if group_names is not None:
        if truth is None:
            raise ValueError("--group-names needs --levels: the names are for its coarsest level's groups")
        needed = int(truth.levels[-1].max()) + 1
        if len(group_names) != needed:
            raise ValueError(f"--group-names {args.group_names}: has {len(group_names)} names, but the coarsest "
                             f"--levels level has group ids 0..{needed - 1} ({needed} names needed)")


def _warning(message: Warning | str, category: type, *args: Any, **kwargs: Any) -> None:
    """Python's warnings as one line each, like the errors (not the source line that raised them)."""
    print(f"l2h: warning: {message}", file=sys.stderr)


def _error(message: object) -> int:
    print(f"l2h: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
