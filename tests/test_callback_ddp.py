"""L2HMonitor under real DDP: ddp_spawn, 2 CPU processes (gloo), uneven and empty validation shards."""

import json
from datetime import timedelta

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from l2h_lightning import Hierarchy, L2HMonitor
from lightning_helpers import SUPER, Classifier, DumpMetrics, trainer_kwargs

TRUTH = Hierarchy.from_levels([SUPER])


def run(tmp_path, mode, shards, devices):
    out = tmp_path / f"{mode}-{devices}"
    out.mkdir()
    kwargs = trainer_kwargs(out, max_epochs=1, num_sanity_val_steps=0, use_distributed_sampler=False)
    if devices == 2:  # a hang would fail after 60 s instead of blocking the suite
        kwargs.update(devices=2, strategy=DDPStrategy(start_method="spawn", timeout=timedelta(seconds=60)))
    trainer = Trainer(callbacks=[L2HMonitor(target_hierarchy=TRUTH), DumpMetrics(out)], logger=TensorBoardLogger(out), **kwargs)
    model = Classifier(shard_val=shards)
    trainer.fit(model) if mode == "fit" else trainer.validate(model)
    saved = json.loads((out / "lightning_logs" / "version_0" / "l2h" / "epoch_0000.json").read_text())
    logged = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    return saved, logged


@pytest.mark.parametrize(
    ("mode", "shards"),
    [
        ("validate", [list(range(0, 200)), list(range(200, 300))]),  # uneven
        ("validate", [list(range(300)), []]),  # rank 1 has no batch at all
        ("fit", [list(range(0, 300, 3)), []]),  # ... while training (it joins in on_train_epoch_end)
    ],
    ids=["validate-uneven", "validate-empty-rank", "fit-empty-rank"],
)
def test_two_processes_match_one(tmp_path, mode, shards):
    two, logged = run(tmp_path, mode, shards, devices=2)
    everything = sorted(shards[0] + shards[1])
    one, _ = run(tmp_path, mode, [everything], devices=1) if mode == "validate" else (None, None)
    if mode == "fit" or shards[1]:
        assert logged[0] == logged[1]  # every process logs the same values
    else:  # trainer.validate skips a process without batches: Lightning lets it log nothing
        assert logged[1] == {}
    assert logged[0]["l2h/dp"] == pytest.approx(two["dp"])
    assert two["num_points"] == len(everything)
    if one is not None:
        assert Hierarchy.from_dict(two["tree"]) == Hierarchy.from_dict(one["tree"])
        for key in ("dp", "lhd", "leaf_purity", "level1/nmi", "empty_clusters"):
            assert two[key] == pytest.approx(one[key])
