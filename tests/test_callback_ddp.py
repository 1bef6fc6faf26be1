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


def run(tmp_path, mode, shards, devices, **overrides):
    out = tmp_path / f"{mode}-{devices}"
    out.mkdir()
    kwargs = trainer_kwargs(out, max_epochs=1, num_sanity_val_steps=0, use_distributed_sampler=False, **overrides)
    if devices == 2:  # a hang would fail after 60 s instead of blocking the suite
        kwargs.update(devices=2, strategy=DDPStrategy(start_method="spawn", timeout=timedelta(seconds=60)))
    trainer = Trainer(callbacks=[L2HMonitor(target_hierarchy=TRUTH, log_images=False), DumpMetrics(out)], logger=TensorBoardLogger(out), **kwargs)
    model = Classifier(shard_val=shards)
    trainer.fit(model) if mode == "fit" else trainer.validate(model)
    files = sorted((out / "lightning_logs" / "version_0" / "l2h").glob("*.json"))
    logged = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    return json.loads(files[-1].read_text()), logged, [f.name for f in files]


@pytest.mark.parametrize(
    ("mode", "shards"),
    [
        ("validate", [list(range(0, 200)), list(range(200, 300))]),  # uneven
        ("validate", [list(range(300)), []]),  # rank 1 has no batch at all
        # ... while training, validating twice per epoch: rank 1 joins each gather from its next training hook
        ("fit", [list(range(0, 300, 3)), []]),
    ],
    ids=["validate-uneven", "validate-empty-rank", "fit-mid-epoch-empty-rank"],
)
def test_two_processes_match_one(tmp_path, mode, shards):
    overrides = {"val_check_interval": 0.5} if mode == "fit" else {}
    two, logged, files = run(tmp_path, mode, shards, devices=2, **overrides)
    everything = sorted(shards[0] + shards[1])
    one = run(tmp_path, mode, [everything], devices=1)[0] if mode == "validate" else None
    if mode == "fit":  # 4 training batches per process: validation after the 2nd and the 4th
        assert files == ["epoch_0000_step_000002.json", "epoch_0000_step_000004.json"]
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
