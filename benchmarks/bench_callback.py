"""Benchmark L2HMonitor: what collecting costs a validation step, and where the epoch-end time goes.

    python benchmarks/bench_callback.py            # about a minute on 2 CPU cores

1. A small CNN's validation epoch on CPU (synthetic 32x32 images, 100 classes), with and without the monitor: the
   time spent in the validation batches (collection happens there; the epoch-end work is timed separately), median
   of several alternating runs, and their ratio.
2. The epoch-end work at N=50,000, K=1,000 (planted-hierarchy logits as in bench_engine.py): gather, engine,
   metrics, picture and TensorBoard write, each timed alone, and the monitor's whole `on_validation_epoch_end`
   in a real `trainer.validate`.
Prints both and writes JSON (``benchmarks/results/callback_cpu.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from families import _planted, calibrate  # noqa: E402

from l2h_lightning import L2HMonitor, l2h  # noqa: E402
from l2h_lightning.metrics.functional import hierarchy_scores  # noqa: E402
from l2h_lightning.plotting import figure_to_array, plot_dendrogram  # noqa: E402


class Stopwatch(Callback):
    """Seconds spent in the validation batches, and in the epoch-end hooks of the callbacks listed after it."""

    def __init__(self) -> None:
        self.batches: list[float] = []
        self.epoch_end: list[float] = []

    def on_validation_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):  # runs before the monitor's (callback order)
        self.batches.append(time.perf_counter() - self._start)
        self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        self.epoch_end.append(time.perf_counter() - self._start)


class SmallCNN(LightningModule):
    def __init__(self, classes: int = 100) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, classes),
        )

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return {"logits": self.net(x), "target": y}


class Replay(LightningModule):
    """Returns precomputed logits batch by batch: the epoch end then sees exactly the benchmark's N x K logits."""

    def __init__(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.target = logits, target
        self.anchor = torch.nn.Linear(1, 1)

    def validation_step(self, batch, batch_idx):
        (rows,) = batch
        return {"logits": self.logits[rows], "target": self.target[rows]}


def trainer(callbacks, root: str, logger=False) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, callbacks=callbacks, logger=logger, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, default_root_dir=root)


def collection_overhead(repeats: int = 7) -> dict:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(4096, 3, 32, 32, generator=g), torch.randint(100, (4096,), generator=g))
    loader = DataLoader(data, batch_size=128)
    model = SmallCNN()
    plain, monitored = Stopwatch(), Stopwatch()
    monitor = L2HMonitor(log_images=False)
    hook_seconds = []
    collect = monitor.on_validation_batch_end

    def timed_collect(*args, **kwargs):  # the time the monitor itself adds to each batch
        start = time.perf_counter()
        collect(*args, **kwargs)
        hook_seconds.append(time.perf_counter() - start)

    monitor.on_validation_batch_end = timed_collect
    with tempfile.TemporaryDirectory() as tmp:  # (where the monitor saves its files without a logger)
        trainer([plain], tmp).validate(model, loader, verbose=False)  # warm-up
        for _ in range(repeats):  # alternating, and the fastest of each: background noise only adds time
            trainer([plain], tmp).validate(model, loader, verbose=False)
            trainer([monitored, monitor], tmp).validate(model, loader, verbose=False)
    without, with_ = min(plain.batches[1:]), min(monitored.batches)
    hook = statistics.median(hook_seconds)
    return {"batches": len(loader), "batch_size": 128, "without_s": without, "with_s": with_,
            "overhead_percent": 100 * (with_ / without - 1), "hook_s_per_batch": hook,
            "hook_percent_of_batch": 100 * hook * len(loader) / without, "epoch_end_s": min(monitored.epoch_end)}


def epoch_end_breakdown(n: int = 50000, k: int = 1000) -> dict:
    logits, target = _planted(n, k, *calibrate(k), seed=0)
    batches = [(logits[s : s + 1000], target[s : s + 1000]) for s in range(0, n, 1000)]
    monitor = L2HMonitor(class_names=[f"class {i}" for i in range(k)])
    out: dict[str, float] = {}

    def timed(name, fn, repeats=3):  # the fastest of a few runs: this machine's noise only adds
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - start)
        out[name] = min(times)
        return value

    plot_dendrogram(l2h(logits[:2000, :200]))  # warm up: one-time imports are not per-epoch costs
    gathered, y = timed("join_s", lambda: monitor._local(list(batches), torch.device("cpu")))  # it frees what it joins
    tree = timed("engine_s", lambda: l2h(gathered))
    timed("metrics_s", lambda: hierarchy_scores(tree, gathered, y))
    fig, _ = timed("picture_s", lambda: plot_dendrogram(tree, monitor.class_names))
    image = timed("picture_to_array_s", lambda: figure_to_array(fig))
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)

        def write():
            writer.add_image("l2h/dendrogram", image, 0, dataformats="HWC")
            writer.add_text("l2h/tree", tree.to_text(monitor.class_names) + tree.to_newick(monitor.class_names), 0)
            writer.flush()

        timed("tensorboard_write_s", write, repeats=1)
        writer.close()

        from lightning.pytorch.loggers import TensorBoardLogger

        watch = Stopwatch()
        rows = DataLoader(TensorDataset(torch.arange(n)), batch_size=1000)
        callbacks = [watch, L2HMonitor(class_names=monitor.class_names)]
        for _ in range(3):  # after the first epoch (which pays one-time imports): the steady state
            trainer(callbacks, tmp, TensorBoardLogger(tmp)).validate(Replay(logits, target), rows, verbose=False)
        out["monitor_epoch_end_s"] = min(watch.epoch_end[1:])
    return {"n": n, "k": k, **out}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    overhead = collection_overhead()
    print(f"validation epoch of a small CNN ({overhead['batches']} batches of {overhead['batch_size']} 32x32 images, "
          f"100 classes): {overhead['without_s'] * 1e3:.0f} ms without the monitor, {overhead['with_s'] * 1e3:.0f} ms "
          f"with it: {overhead['overhead_percent']:+.2f}%; the monitor's own work per batch "
          f"{overhead['hook_s_per_batch'] * 1e6:.0f} us = {overhead['hook_percent_of_batch']:.3f}% of a batch "
          f"(then {overhead['epoch_end_s'] * 1e3:.0f} ms at epoch end, N=4,096)")
    breakdown = epoch_end_breakdown()
    print(f"epoch end at N={breakdown['n']:,}, K={breakdown['k']:,}:")
    for key, value in breakdown.items():
        if key.endswith("_s"):
            print(f"  {key[:-2]:<20} {value * 1e3:8.1f} ms")
    out = HERE / "results" / "callback_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                               "collection": overhead, "epoch_end": breakdown}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
