"""CIFAR-100 with its 20-superclass taxonomy: does the model's class hierarchy find the superclasses?

Trains a small CNN on real CIFAR-100 (torchvision downloads it, ~170 MB, into --data) with `L2HMonitor`, giving
the official fine-to-coarse taxonomy as `target_hierarchy`: TensorBoard then shows the LCA height distance to the
taxonomy and, at the 20-group cut of the learned tree, NMI/ARI/accuracy against the superclasses, with the
dendrogram's leaves coloured by superclass. About 1 minute per epoch on a laptop CPU, seconds on a GPU.

    pip install torchvision
    python examples/cifar100.py --epochs 30 --data ~/data
    python examples/cifar100.py --taxonomy           # just print the taxonomy (no download)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from l2h_lightning import Hierarchy, L2HMonitor

# The official CIFAR-100 superclasses (coarse labels 0..19, in this order) and their fine classes.
SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
# CIFAR-100's fine label ids are its class names in alphabetical order (torchvision's dataset.classes).
FINE_NAMES = sorted(name for names in SUPERCLASSES.values() for name in names)
COARSE_NAMES = list(SUPERCLASSES)


def taxonomy(fine_names: list[str] = FINE_NAMES) -> Hierarchy:
    """The two-level ground truth over the fine classes, in the order of `fine_names`."""
    coarse_of = {fine: c for c, names in enumerate(SUPERCLASSES.values()) for fine in names}
    missing = [name for name in fine_names if name not in coarse_of]
    if missing:
        raise ValueError(f"classes without a superclass: {missing}")
    return Hierarchy.from_levels([[coarse_of[name] for name in fine_names]])


def cifar100(root: Path, train: bool):
    """The real dataset, normalised, with light augmentation for training (downloads on first use)."""
    import torchvision
    from torchvision import transforms as T

    mean, std = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
    return torchvision.datasets.CIFAR100(str(root), train=train, download=True, transform=transform)


class SmallCNN(LightningModule):
    def __init__(self, lr: float = 0.05, epochs: int = 30) -> None:
        super().__init__()
        self.save_hyperparameters()

        def block(cin: int, cout: int) -> torch.nn.Module:
            return torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
                torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            )

        self.net = torch.nn.Sequential(block(3, 64), block(64, 128), block(128, 256),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(256, 100))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)
        return {"logits": logits, "target": y}

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.hparams.epochs)]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data"), help="where CIFAR-100 is (or is downloaded to)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--out", type=Path, default=Path("l2h_runs"))
    parser.add_argument("--taxonomy", action="store_true", help="print the taxonomy and exit (no download)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.taxonomy:
        truth = taxonomy()
        for c, name in enumerate(COARSE_NAMES):
            print(f"{c:>2} {name}: " + ", ".join(f for f, g in zip(FINE_NAMES, truth.levels[0].tolist()) if g == c))
        return
    train, val = cifar100(args.data, train=True), cifar100(args.data, train=False)
    truth = taxonomy(list(val.classes))  # the dataset's own class order
    monitor = L2HMonitor(class_names=list(val.classes), target_hierarchy=truth, store_dtype=torch.float16)
    trainer = Trainer(max_epochs=args.epochs, accelerator=args.accelerator, callbacks=[monitor],
                      logger=TensorBoardLogger(args.out, name="cifar100"))
    loaders = dict(batch_size=args.batch_size, num_workers=args.workers, pin_memory=True)
    trainer.fit(SmallCNN(epochs=args.epochs), DataLoader(train, shuffle=True, drop_last=True, **loaders),
                DataLoader(val, **loaders))
    last = monitor.history[-1]
    print(f"DP {last['dp']:.3f}, LHD to the taxonomy {last['lhd']:.3f}, superclass NMI at 20 groups "
          f"{last['level1/nmi']:.3f}; dendrogram: {monitor.last_files['png']}")


if __name__ == "__main__":
    main()
