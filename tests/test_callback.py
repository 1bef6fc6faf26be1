"""L2HMonitor in a real Trainer on CPU, events read back with TensorBoard's EventAccumulator."""

import json

import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from l2h_lightning import Hierarchy, L2HMonitor, l2h
from l2h_lightning.metrics.functional import dendrogram_purity, lca_height_distance, leaf_purity, level_scores, tree_distance
from lightning_helpers import SUPER, Classifier, make_data, trainer_kwargs

TRUTH = Hierarchy.from_levels([SUPER])
NAMES = ["cat", "dog", "fox", "car", "bus", "van"]


def events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def val_logits(model):
    x, y = make_data(300, 1).tensors
    with torch.no_grad():
        return model.net(x), y


def test_fit_logs_scalars_images_text_and_json_every_epoch(tmp_path):
    monitor = L2HMonitor(class_names=NAMES, target_hierarchy=TRUTH)
    logger = TensorBoardLogger(tmp_path, name="run")
    model = Classifier()
    Trainer(callbacks=[monitor], logger=logger, **trainer_kwargs(tmp_path)).fit(model)

    acc = events(logger.log_dir)
    assert len(acc.Images("l2h/dendrogram")) == 3  # one per epoch, none from the sanity check
    assert len(acc.Tensors("l2h/tree/text_summary")) == 3
    text = acc.Tensors("l2h/tree/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "cat" in text and "Newick" in text
    scalars = set(acc.Tags()["scalars"])
    expected = {"l2h/dp", "l2h/lhd", "l2h/leaf_purity", "l2h/drift", "l2h/empty_clusters", "l2h/seconds"}
    expected |= {f"l2h/level1/{m}" for m in ("nmi", "ari", "acc")}
    assert expected <= scalars
    assert len(acc.Scalars("l2h/dp")) == 3 and len(acc.Scalars("l2h/drift")) == 2

    # the last epoch's numbers are the functional metrics on the model's validation logits
    logits, y = val_logits(model)
    tree = l2h(logits)
    assert monitor.hierarchy == tree
    saved = json.loads((tmp_path / "run" / "version_0" / "l2h" / "epoch_0002.json").read_text())
    assert Hierarchy.from_dict(saved["tree"]) == tree
    assert saved["dp"] == pytest.approx(float(dendrogram_purity(tree, logits, y)))
    assert saved["lhd"] == pytest.approx(float(lca_height_distance(tree, logits, y, TRUTH)))
    assert saved["leaf_purity"] == pytest.approx(float(leaf_purity(logits, y)))
    assert saved["level1/acc"] == pytest.approx(float(level_scores(tree, logits, y, TRUTH)["level1/acc"]))
    assert acc.Scalars("l2h/dp")[-1].value == pytest.approx(saved["dp"])
    assert saved["drift"] == pytest.approx(monitor.history[-1]["drift"])
    assert (tmp_path / "run" / "version_0" / "l2h" / "epoch_0002.png").exists()
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]


def test_validate_only_on_a_trained_model(tmp_path):
    monitor = L2HMonitor(target_hierarchy=TRUTH)
    model = Classifier()
    results = Trainer(callbacks=[monitor], logger=TensorBoardLogger(tmp_path), **trainer_kwargs(tmp_path)).validate(model)
    logits, y = val_logits(model)
    assert monitor.hierarchy == l2h(logits)
    assert results[0]["l2h/dp"] == pytest.approx(float(dendrogram_purity(l2h(logits), logits, y)))
    assert "l2h/drift" not in results[0]


def test_no_logger_and_other_loggers(tmp_path, caplog):
    monitor = L2HMonitor()
    trainer = Trainer(callbacks=[monitor], logger=False, **trainer_kwargs(tmp_path, max_epochs=1))
    trainer.fit(Classifier())
    assert "l2h/dp" in trainer.callback_metrics
    assert (tmp_path / "l2h" / "epoch_0000.json").exists()

    csv = CSVLogger(tmp_path / "csv")
    monitor = L2HMonitor()
    with caplog.at_level("INFO"):
        Trainer(callbacks=[monitor], logger=csv, **trainer_kwargs(tmp_path, max_epochs=1)).fit(Classifier())
    assert "no TensorBoardLogger" in caplog.text
    assert "l2h/dp" in (tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv").read_text()


def test_tensor_outputs_and_missing_target(tmp_path):
    monitor = L2HMonitor()
    trainer = Trainer(callbacks=[monitor], logger=False, **trainer_kwargs(tmp_path, max_epochs=2))
    trainer.fit(Classifier(output="tensor"))
    assert {"l2h/drift", "l2h/empty_clusters", "l2h/seconds"} <= set(trainer.callback_metrics)
    assert "l2h/dp" not in trainer.callback_metrics
    with pytest.warns(UserWarning, match="no 'target' in the validation outputs"):
        Trainer(callbacks=[L2HMonitor()], logger=False, **trainer_kwargs(tmp_path, max_epochs=1)).fit(Classifier(output="no-target"))


def test_extract_and_several_dataloaders(tmp_path):
    monitor = L2HMonitor(extract=lambda outputs, batch: (outputs["logits"], batch[1]))
    model = Classifier(val_sets=[make_data(200, 1), make_data(150, 2)])
    trainer = Trainer(callbacks=[monitor], logger=TensorBoardLogger(tmp_path), **trainer_kwargs(tmp_path, max_epochs=1))
    trainer.fit(model)
    assert {"l2h/dp/dataloader_idx_0", "l2h/dp/dataloader_idx_1"} <= set(trainer.callback_metrics)
    assert set(monitor.hierarchies) == {0, 1}
    acc = events(trainer.logger.log_dir)
    assert {"l2h/dendrogram/dataloader_idx_0", "l2h/dendrogram/dataloader_idx_1"} <= set(acc.Tags()["images"])


def test_every_n_epochs_and_model_checkpoint_on_dp(tmp_path):
    monitor = L2HMonitor(every_n_epochs=2)
    # same schedule for the checkpoint, which needs l2h/dp whenever it checks
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="l2h/dp", mode="max", save_top_k=1, every_n_epochs=2)
    trainer = Trainer(
        callbacks=[monitor, checkpoint], logger=False, **trainer_kwargs(tmp_path, max_epochs=4, enable_checkpointing=True)
    )
    trainer.fit(Classifier())
    assert [h["epoch"] for h in monitor.history] == [1, 3]
    assert checkpoint.best_model_score == pytest.approx(max(h["dp"] for h in monitor.history))


def test_resume_from_checkpoint_continues_drift(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = L2HMonitor()
    Trainer(callbacks=[first, ckpt], logger=False, **trainer_kwargs(tmp_path, max_epochs=2, enable_checkpointing=True)).fit(Classifier())
    second = L2HMonitor()
    trainer = Trainer(callbacks=[second], logger=False, **trainer_kwargs(tmp_path, max_epochs=3))
    trainer.fit(Classifier(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert [h["epoch"] for h in second.history] == [0, 1, 2]
    assert second.history[-1]["drift"] == pytest.approx(float(tree_distance(first.hierarchy, second.hierarchy)))
    assert "l2h/drift" in trainer.callback_metrics


def test_no_pyplot_figures_stay_open(tmp_path):
    before = plt.get_fignums()
    Trainer(callbacks=[L2HMonitor(class_names=NAMES)], logger=TensorBoardLogger(tmp_path), **trainer_kwargs(tmp_path, max_epochs=6)).fit(Classifier())
    assert plt.get_fignums() == before == []


@pytest.mark.parametrize(
    ("output", "extract", "message"),
    [
        ("dict", lambda o, b: (o["logits"][:, :, None], None), "floating-point \\(N, K\\) tensor"),
        ("dict", lambda o, b: (o["logits"], b[1][:3]), "target must be class ids \\(N,\\)"),
        ("none", None, "validation_step returned NoneType"),
        ("dict", lambda o, b: (o["logits"], b[1] if len(b[1]) == 64 else None), "some validation batches came with a target"),
    ],
)
def test_bad_outputs_name_the_problem(tmp_path, output, extract, message):
    trainer = Trainer(callbacks=[L2HMonitor(extract=extract)], logger=False, **trainer_kwargs(tmp_path, max_epochs=1, num_sanity_val_steps=0))
    with pytest.raises(ValueError, match=message):
        trainer.fit(Classifier(output=output))


def test_missing_key_lists_the_keys(tmp_path):
    trainer = Trainer(callbacks=[L2HMonitor(logits_key="scores")], logger=False, **trainer_kwargs(tmp_path, num_sanity_val_steps=0))
    with pytest.raises(ValueError, match=r"without 'scores' \(keys: \['logits', 'target'\]\)"):
        trainer.fit(Classifier())


def test_k_changing_between_epochs(tmp_path):
    def extract(outputs, batch):
        logits = outputs["logits"]
        return (logits if trainer.current_epoch == 0 else logits[:, :5]), batch[1].clamp(max=4)

    trainer = Trainer(callbacks=[L2HMonitor(extract=extract)], logger=False, **trainer_kwargs(tmp_path, num_sanity_val_steps=0))
    with pytest.raises(ValueError, match="K changed between epochs: 6 before, 5 now"):
        trainer.fit(Classifier())


def test_arguments_are_validated():
    for kwargs, message in [
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"aggregation": "mean"}, "aggregation"),
        ({"max_samples": -1}, "max_samples"),
        ({"store_dtype": torch.long}, "store_dtype"),
        ({"extract": "logits"}, "extract"),
        ({"class_names": ["a"], "target_hierarchy": TRUTH}, "class_names has 1 names"),
        ({"target_hierarchy": [0, 1]}, "target_hierarchy must be a Hierarchy"),
    ]:
        with pytest.raises(ValueError, match=message):
            L2HMonitor(**kwargs)


def test_max_samples_and_store_dtype(tmp_path):
    monitor = L2HMonitor(max_samples=100, store_dtype=torch.float16)
    with pytest.warns(UserWarning, match="max_samples=100 reached"):
        Trainer(callbacks=[monitor], logger=False, **trainer_kwargs(tmp_path, max_epochs=1)).fit(model := Classifier())
    logits, _ = val_logits(model)
    assert monitor.hierarchy == l2h(logits[:100].half())
