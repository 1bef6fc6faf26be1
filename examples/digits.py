"""Which digits does a classifier think are alike? L2HMonitor on scikit-learn's bundled digits (real data, no download).

Trains a small MLP on the 8x8 digit images (1,797 of them) on CPU (20 epochs in about 10 s), with `L2HMonitor`
building the class hierarchy from the validation logits every epoch. Then prints the learned tree and which digits
the model groups together.

    python examples/digits.py                  # 20 epochs, TensorBoard logs in l2h_runs/digits
    python examples/digits.py --epochs 1       # a quick check (what CI runs)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from l2h_lightning import L2HMonitor

DIGITS = [str(d) for d in range(10)]


def digits_data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, val = order[:1200], order[1200:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


class DigitClassifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return {"logits": self.net(x), "target": y}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=2e-3)


def main(argv: list[str] | None = None) -> L2HMonitor:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("l2h_runs"))
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    train, val = digits_data()
    monitor = L2HMonitor(class_names=DIGITS)
    trainer = Trainer(max_epochs=args.epochs, accelerator="cpu", callbacks=[monitor],
                      logger=TensorBoardLogger(args.out, name="digits"), enable_checkpointing=False,
                      enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=5)
    trainer.fit(DigitClassifier(), DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))

    tree = monitor.hierarchy
    print(f"\ndendrogram purity {monitor.history[-1]['dp']:.3f} after {args.epochs} epoch(s)")
    print("the tree the model learned over the digits:")
    print(tree.to_text(DIGITS))
    print("first merges (most alike first):", ", ".join(
        "{" + ",".join(DIGITS[i] for i in tree.leaves(int(a))) + "}+{" + ",".join(DIGITS[i] for i in tree.leaves(int(b))) + "}"
        for a, b in tree.merges[:4].tolist()))
    for n in (2, 3, 4):
        cut = tree.cut(n).tolist()
        groups = [" ".join(d for d, g in zip(DIGITS, cut) if g == k) for k in range(n)]
        print(f"{n} groups: " + " | ".join(groups))
    print("pictures, JSON and the explorable HTML tree:", ", ".join(str(p) for p in monitor.last_files.values()))
    return monitor


if __name__ == "__main__":
    main()
