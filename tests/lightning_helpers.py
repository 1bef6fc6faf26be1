"""A tiny classifier and data with a planted 2-level hierarchy, for the callback tests (CPU, seconds)."""

import json

import torch
from lightning.pytorch import Callback, LightningModule
from torch.utils.data import DataLoader, TensorDataset

K = 6  # classes 0-2 and 3-5 form two superclasses
SUPER = [0, 0, 0, 1, 1, 1]


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(K, (n,), generator=g)
    centers = torch.randn(K, 8, generator=torch.Generator().manual_seed(99))
    centers += 3 * torch.tensor(SUPER, dtype=torch.float)[:, None]
    x = centers[y] + 0.8 * torch.randn(n, 8, generator=g)
    return TensorDataset(x, y)


class ClassifierSteps:
    """Returns {"logits", "target"} from validation_step (or what `output` says); mixed into a LightningModule."""

    def __init__(self, output: str = "dict", val_sets=None, shard_val: bool = False, num_classes: int = K):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, num_classes)
        self.output = output
        self.val_sets = val_sets if val_sets is not None else [make_data(300, 1)]
        self.shard_val = shard_val
        # Lightning refuses a process with an empty validation loader unless told that this is intended
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        logits = self.net(x)
        if self.output == "tensor":
            return logits
        if self.output == "loss":
            return torch.nn.functional.cross_entropy(logits, y)
        if self.output == "none":
            return None
        if self.output == "list":
            return [logits, y]
        if self.output == "no-target":
            return {"logits": logits}
        return {"logits": logits, "target": y}

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return self.validation_step(batch, batch_idx, dataloader_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self.net(batch[0])

    def teardown(self, stage):
        # The last thing a ddp_spawn worker runs. Left alive until interpreter exit, a gloo process group aborts the
        # process now and then ("terminate called without an active exception": 8 of ~200 bare torch.multiprocessing
        # runs here with a collective just before exit, 0 of ~200 when destroyed first), so close it as PyTorch's
        # DDP tutorial does. Lightning only does this itself for NCCL.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = make_data(400, 0)
        if self.shard_val:  # equal training shards, so that DDP gradient syncs line up
            rank, world = self.trainer.global_rank, self.trainer.world_size
            data = torch.utils.data.Subset(data, range(rank, len(data), world))
        return DataLoader(data, batch_size=50)

    def val_dataloader(self):
        loaders = []
        for data in self.val_sets:
            if self.shard_val:  # explicit, possibly uneven or empty shards (no DistributedSampler padding)
                rank = self.trainer.global_rank
                data = torch.utils.data.Subset(data, self.shard_val[rank]) if self.shard_val is not True else data
            loaders.append(DataLoader(data, batch_size=64))
        return loaders if len(loaders) > 1 else loaders[0]

    def test_dataloader(self):
        return self.val_dataloader()


class Classifier(ClassifierSteps, LightningModule):
    """The tiny classifier as a `lightning.pytorch` module (`ClassifierSteps` mixes into other packages' too)."""


def trainer_kwargs(tmp_path, **overrides):
    kwargs = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=2,
    )
    kwargs.update(overrides)
    return kwargs



COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "gather", "reduce", "scatter")


class DumpMetrics(Callback):
    """Writes each process's logged l2h values to rank{N}.json when it finishes (to compare processes), with the
    dtype and size of every tensor that went through a torch.distributed collective after `setup`."""

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def setup(self, trainer, pl_module, stage):
        self.calls, self.saved = [], {}
        if not torch.distributed.is_initialized():
            return
        for name in COLLECTIVES:
            original = self.saved[name] = getattr(torch.distributed, name)

            def spy(*args, _name=name, _original=original, **kwargs):
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                tensors += [t for a in args if isinstance(a, list) for t in a if isinstance(t, torch.Tensor)]
                self.calls += [(_name, str(t.dtype), t.numel()) for t in tensors]
                return _original(*args, **kwargs)

            setattr(torch.distributed, name, spy)

    def teardown(self, trainer, pl_module, stage):
        for name, original in self.saved.items():
            setattr(torch.distributed, name, original)
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("l2h/")}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({"logged": values, "calls": self.calls}))
