"""The functional API on saved logits: what `python -m l2h_lightning analyze` does, in Python (a few seconds).

Saves a logits file first (synthetic, 20,000 points over 100 classes in 10 superclasses) unless you pass your own:

    python examples/offline_logits.py                         # synthetic logits
    python examples/offline_logits.py my_logits.npy --target my_labels.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from l2h_lightning import Hierarchy, l2h, save_dendrogram
from l2h_lightning.analysis import load_labels, load_logits
from l2h_lightning.explain import suggest_cuts, surprising_merges
from l2h_lightning.metrics.functional import dendrogram_purity, lca_height_distance, leaf_purity, level_scores


def synthetic(path: Path, n: int = 20000, k: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """Logits of a mediocre classifier over k classes in k/10 superclasses: it confuses classes within one."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(k, (n,), generator=g)
    same = (torch.arange(k)[:, None] // 10 == torch.arange(k)[None, :] // 10).float()
    logits = 6 * torch.eye(k)[y] + 3 * same[y] + 1.8 * torch.randn(n, k, generator=g)
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "logits.npy", logits.numpy())
    np.save(path / "target.npy", y.numpy())
    return path / "logits.npy", path / "target.npy"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logits", nargs="?", type=Path)
    parser.add_argument("--target", type=Path)
    parser.add_argument("--out", type=Path, default=Path("l2h_out/offline"))
    args = parser.parse_args(argv)
    if args.logits is None:
        args.logits, args.target = synthetic(args.out)

    logits = load_logits(args.logits)                      # .pt, .npy (memory-mapped), .npz or .csv; floats only
    tree = l2h(logits)                                     # the hierarchy over the K classes
    print(tree)
    path = save_dendrogram(tree, args.out / "dendrogram.svg", max_leaves=150)
    print(f"dendrogram: {path}")
    print(f"explorable tree: {save_dendrogram(tree, args.out / 'tree.html')}")
    print(f"suggested cuts (numbers of groups): {suggest_cuts(tree)}")
    scores = {}
    if args.target is not None:
        target = load_labels(args.target)
        scores["dp"] = float(dendrogram_purity(tree, logits, target))
        scores["lhd (flat truth)"] = float(lca_height_distance(tree, logits, target))
        scores["leaf purity"] = float(leaf_purity(logits, target))
        if logits.shape[1] % 10 == 0:  # the synthetic data's superclasses: classes 0-9, 10-19, ...
            truth = Hierarchy.from_levels([[c // 10 for c in range(logits.shape[1])]])
            scores["lhd (superclasses)"] = float(lca_height_distance(tree, logits, target, truth))
            scores.update({k: float(v) for k, v in level_scores(tree, logits, target, truth).items()})
            for r in surprising_merges(tree, truth, logits=logits, top=3):
                print(f"surprising merge {r['surprise']:.3f}: {r['label']} (points {r['points'][:5]})")
        for name, value in scores.items():
            print(f"{name:>20}: {value:.4f}")
    return scores


if __name__ == "__main__":
    main()
