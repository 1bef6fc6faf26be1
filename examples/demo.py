"""Demo: train a small classifier with `L2HMonitor` and watch the class hierarchy emerge (CPU, well under a minute).

The data is synthetic with a known two-level hierarchy: 20 classes in 4 superclasses (animals, vehicles, plants,
tools); classes of the same superclass look alike. The monitor builds the L2H tree from the validation logits
every epoch, scores it against the true hierarchy (the legend names the four superclasses), and logs everything
to TensorBoard: scalars, the tree card and the full dendrogram (IMAGES), the tree as text (TEXT), and per epoch
a JSON record, the PNGs and an explorable HTML tree under l2h_runs/demo/version_N/l2h/.

    python examples/demo.py                 # 12 epochs
    python examples/demo.py --epochs 2      # quicker
    tensorboard --logdir l2h_runs           # then open http://localhost:6006 (IMAGES, TEXT, SCALARS tabs)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from l2h_lightning import Hierarchy, L2HMonitor

SUPERCLASSES = {
    "animals": ["cat", "dog", "fox", "wolf", "lynx"],
    "vehicles": ["car", "bus", "van", "truck", "tram"],
    "plants": ["oak", "pine", "fern", "moss", "palm"],
    "tools": ["saw", "drill", "hammer", "wrench", "chisel"],
}
CLASS_NAMES = [name for names in SUPERCLASSES.values() for name in names]
SUPER_OF = [i for i, names in enumerate(SUPERCLASSES.values()) for _ in names]


def synthetic_data(n: int, seed: int, dim: int = 32) -> TensorDataset:
    """Points around class centres; a class centre = its superclass centre + a smaller offset of its own."""
    centres = torch.Generator().manual_seed(1234)
    supers = 2.2 * torch.randn(len(SUPERCLASSES), dim, generator=centres)
    offsets = 1.3 * torch.randn(len(CLASS_NAMES), dim, generator=centres)
    means = supers[SUPER_OF] + offsets
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(CLASS_NAMES), (n,), generator=g)
    return TensorDataset(means[y] + 2.6 * torch.randn(n, dim, generator=g), y)


class Classifier(LightningModule):
    def __init__(self, dim: int = 32, classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, classes))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val/acc", (logits.argmax(1) == y).float().mean())
        return {"logits": logits, "target": y}  # what L2HMonitor collects

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("l2h_runs"))
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    truth = Hierarchy.from_levels([SUPER_OF])
    # clade support every 4th epoch (50 bootstrap engine runs each); surprising merges and cuts every epoch
    monitor = L2HMonitor(class_names=CLASS_NAMES, target_hierarchy=truth, group_names=list(SUPERCLASSES),
                         support_every_n_epochs=4)
    logger = TensorBoardLogger(args.out, name="demo")
    trainer = Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        callbacks=[monitor],
        logger=logger,
        log_every_n_steps=10,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    train = DataLoader(synthetic_data(8000, seed=0), batch_size=128, shuffle=True)
    val = DataLoader(synthetic_data(4000, seed=1), batch_size=512)
    trainer.fit(Classifier(), train, val)

    last = monitor.history[-1]
    print(f"\nafter {args.epochs} epochs: dendrogram purity {last['dp']:.3f} (higher is better), "
          f"LCA height distance {last['lhd']:.3f} (lower is better), superclass accuracy of the 4-group cut "
          f"{last['level1/acc']:.3f}")
    print("top of the learned tree:", monitor.hierarchy.to_newick(CLASS_NAMES))
    print(f"last dendrogram: {monitor.last_files['png']} (the TensorBoard card), "
          f"{monitor.last_files['dendrogram_full_png']} (every class)")
    insight = monitor.insights[0]
    for r in insight["surprises"][:3]:
        print(f"surprising merge {r['surprise']:.3f}: {r['label']}")
    for cut in insight["cuts"]:
        print(f"suggested cut into {cut['groups']} groups:", " | ".join(", ".join(g) for g in cut["members"]))
    if insight["support"] is not None:
        print(f"mean clade support {last['support_mean']:.2f} ({last['support_seconds']:.1f} s)")
    if "html" in monitor.last_files:
        print(f"explorable tree (fold, search, hover): {monitor.last_files['html']}")
    print(f"metrics and tree: {monitor.last_files['json']}")
    print(f"to look at every epoch: tensorboard --logdir {args.out}   (then open http://localhost:6006)")
    return json.loads(monitor.last_files["json"].read_text())


if __name__ == "__main__":
    main()
