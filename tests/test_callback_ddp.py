"""L2HMonitor under real DDP: ddp_spawn (and its forkserver variant), 2 CPU processes (gloo), uneven and empty
validation shards.

Each process gives its own points to the distributed engine: every collective is checked to carry only small
tensors (no logits), and the logged values equal a one-process run on the same points.
"""

import json
import multiprocessing
from datetime import timedelta

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from l2h_lightning import Hierarchy, L2HMonitor, l2h
from lightning_helpers import K, SUPER, Classifier, DumpMetrics, make_data, trainer_kwargs

TRUTH = Hierarchy.from_levels([SUPER])
BOOT = 4
# Workers forked from one server that imported torch and Lightning once (a spawned worker re-imports them: ~15 s
# per run on a loaded 2-core machine); the same launcher and pickling as ddp_spawn, which the first case uses.
multiprocessing.set_forkserver_preload(["torch", "lightning.pytorch", "l2h_lightning", "lightning_helpers"])


def strategy(start_method):  # a hang would fail after 60 s instead of blocking the suite
    return DDPStrategy(start_method=start_method, timeout=timedelta(seconds=60))


def run(tmp_path, mode, shards, devices, start_method="forkserver", **overrides):
    out = tmp_path / f"{mode}-{devices}"
    out.mkdir()
    kwargs = trainer_kwargs(out, max_epochs=1, num_sanity_val_steps=0, use_distributed_sampler=False, **overrides)
    if devices == 2:
        kwargs.update(devices=2, strategy=strategy(start_method))
    monitor = L2HMonitor(target_hierarchy=TRUTH, log_images=False, support_every_n_epochs=1, support_boot=BOOT)
    trainer = Trainer(callbacks=[monitor, DumpMetrics(out)], logger=TensorBoardLogger(out), **kwargs)
    model = Classifier(shard_val=shards)
    trainer.fit(model) if mode == "fit" else trainer.validate(model)
    files = sorted((out / "lightning_logs" / "version_0" / "l2h").glob("*.json"))
    dumped = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    return json.loads(files[-1].read_text()), dumped, [f.name for f in files]


def check_collectives(calls):
    """No logits moved: every floating-point tensor in a collective is one of the engine's 2 (2K - 1) sums or
    smaller, and all_gather moved no floating-point tensor at all; the engine's per-merge all-reduces happened."""
    floats = [(name, n) for name, dtype, n in calls if "float" in dtype]
    assert floats and max(n for _, n in floats) <= 2 * (2 * K - 1)
    assert not [c for c in floats if c[0].startswith("all_gather")]
    assert sum(name == "all_reduce" and dtype == "torch.float64" for name, dtype, _ in calls) >= (BOOT + 1) * (K - 1)
    assert max(n for _, _, n in calls) < 300 * K  # nothing N x K (the pickled agreements are a few hundred bytes)


@pytest.mark.parametrize(
    ("mode", "shards", "start_method"),
    [
        ("validate", [list(range(0, 200)), list(range(200, 300))], "spawn"),  # uneven
        ("validate", [list(range(300)), []], "forkserver"),  # rank 1 has no batch at all
        # ... while training, validating twice per epoch: rank 1 joins each round from its next training hook
        ("fit", [list(range(0, 300, 3)), []], "forkserver"),
    ],
    ids=["validate-uneven", "validate-empty-rank", "fit-mid-epoch-empty-rank"],
)
def test_two_processes_match_one(tmp_path, mode, shards, start_method):
    overrides = {"val_check_interval": 0.5} if mode == "fit" else {}
    two, dumped, files = run(tmp_path, mode, shards, devices=2, start_method=start_method, **overrides)
    logged = [d["logged"] for d in dumped]
    for d in dumped:
        check_collectives(d["calls"])
    everything = sorted(shards[0] + shards[1])
    if mode == "fit":  # 4 training batches per process: validation after the 2nd and the 4th
        assert files == ["epoch_0000_step_000002.json", "epoch_0000_step_000004.json"]
    if mode == "fit" or shards[1]:
        assert logged[0] == logged[1]  # every process logs the same values, support included
        assert "l2h/support_mean" in logged[0] and "l2h/cut1/groups" in logged[0]
    else:  # trainer.validate skips a process without batches: Lightning lets it log nothing
        assert logged[1] == {}
    assert logged[0]["l2h/dp"] == pytest.approx(two["dp"])
    assert two["num_points"] == len(everything)
    if mode == "validate":  # the model is not trained: its logits on all points give the one-process tree
        one = run(tmp_path, mode, [everything], devices=1)[0]
        x, _ = make_data(300, 1).tensors
        with torch.no_grad():
            assert Hierarchy.from_dict(two["tree"]) == l2h(Classifier().net(x[everything]))
        assert Hierarchy.from_dict(two["tree"]) == Hierarchy.from_dict(one["tree"])
        for key in ("dp", "lhd", "leaf_purity", "level1/nmi", "empty_clusters", "cut1/groups", "cut1/level1/nmi"):
            assert two[key] == pytest.approx(one[key])
        assert [r["node"] for r in two["surprises"]] == [r["node"] for r in one["surprises"]]
        assert len(two["support"]) == K - 1 and two["support"][-1] == 1.0


class RecordingMonitor(L2HMonitor):
    """Each worker writes the error its round raised to error{rank}.txt (the launcher only sees the first)."""

    def __init__(self, out_dir, **kwargs):
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def on_validation_epoch_end(self, trainer, pl_module):
        try:
            super().on_validation_epoch_end(trainer, pl_module)
        except ValueError as err:
            (self.out_dir / f"error{trainer.global_rank}.txt").write_text(str(err))
            raise


def fewer_columns_on_rank_1(outputs, batch):
    import torch.distributed as dist

    logits = outputs["logits"]
    return (logits[:, :5] if dist.get_rank() == 1 else logits), batch[1].clamp(max=4)


def test_an_error_on_one_process_is_raised_on_every_process(tmp_path):
    kwargs = trainer_kwargs(tmp_path, max_epochs=1, num_sanity_val_steps=0, use_distributed_sampler=False, devices=2,
                            strategy=strategy("forkserver"))
    monitor = RecordingMonitor(tmp_path, log_images=False, extract=fewer_columns_on_rank_1)
    trainer = Trainer(callbacks=[monitor], logger=False, **kwargs)
    with pytest.raises(Exception, match="disagree on the number of classes K"):
        trainer.validate(Classifier(shard_val=[list(range(150)), list(range(150, 300))]))
    for rank in (0, 1):  # both raised the same error (none waited for the other until the timeout)
        assert (tmp_path / f"error{rank}.txt").read_text().endswith("[6, 5] (process by process)")
