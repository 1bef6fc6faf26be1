"""L2HMonitor in a real Trainer on CPU, events read back with TensorBoard's EventAccumulator.

Tests that are not about pictures pass log_images=False (rendering is most of a round's time).
"""

import json
import logging

import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from l2h_lightning import Hierarchy, L2HMonitor, l2h
from l2h_lightning.explain import clade_support, suggest_cuts, surprising_merges
from l2h_lightning.metrics.functional import contingency_table
from sklearn.metrics import normalized_mutual_info_score
from l2h_lightning.metrics.functional import dendrogram_purity, lca_height_distance, leaf_purity, level_scores, tree_distance
from torch.utils.data import DataLoader

from lightning_helpers import K, SUPER, Classifier, make_data, trainer_kwargs

TRUTH = Hierarchy.from_levels([SUPER])
NAMES = ["cat", "dog", "fox", "car", "bus", "van"]
GROUPS = ["animals", "vehicles"]


def events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def val_logits(model):
    x, y = make_data(300, 1).tensors
    with torch.no_grad():
        return model.net(x), y


def test_fit_logs_scalars_images_text_and_json_every_epoch(tmp_path):
    monitor = L2HMonitor(class_names=NAMES, target_hierarchy=TRUTH, group_names=GROUPS)
    logger = TensorBoardLogger(tmp_path, name="run")
    model = Classifier()
    Trainer(callbacks=[monitor], logger=logger, **trainer_kwargs(tmp_path)).fit(model)

    acc = events(logger.log_dir)
    assert len(acc.Images("l2h/dendrogram")) == 3  # one per epoch, none from the sanity check
    assert len(acc.Tensors("l2h/tree/text_summary")) == 3
    text = acc.Tensors("l2h/tree/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "cat" in text and "Newick" in text and "dp 0." in text
    scalars = set(acc.Tags()["scalars"])
    expected = {"l2h/dp", "l2h/lhd", "l2h/leaf_purity", "l2h/drift", "l2h/empty_clusters", "l2h/seconds"}
    expected |= {f"l2h/level1/{m}" for m in ("nmi", "ari", "acc")}
    expected |= {"l2h/cut1/groups", "l2h/cut1/level1/nmi"}
    assert expected <= scalars
    assert not any(tag.startswith("l2h/support") for tag in scalars)  # off by default
    assert len(acc.Scalars("l2h/dp")) == 3 and len(acc.Scalars("l2h/drift")) == 2
    # image, text and scalars of one validation run share one step
    steps = [[e.step for e in acc.Scalars("l2h/dp")], [e.step for e in acc.Images("l2h/dendrogram")],
             [e.step for e in acc.Tensors("l2h/tree/text_summary")]]
    assert steps[0] == steps[1] == steps[2] and len(set(steps[0])) == 3

    # the last epoch's numbers are the functional metrics on the model's validation logits
    logits, y = val_logits(model)
    tree = l2h(logits)
    assert monitor.hierarchy == tree
    folder = tmp_path / "run" / "version_0" / "l2h"
    assert sorted(p.name for p in folder.glob("*.json")) == [f"epoch_000{e}_step_0000{8 * (e + 1):02d}.json" for e in range(3)]
    saved = json.loads((folder / "epoch_0002_step_000024.json").read_text())
    assert Hierarchy.from_dict(saved["tree"]) == tree
    assert saved["group_names"] == GROUPS and saved["global_step"] == 24 and saved["epoch"] == 2
    assert saved["dp"] == pytest.approx(float(dendrogram_purity(tree, logits, y)))
    assert saved["lhd"] == pytest.approx(float(lca_height_distance(tree, logits, y, TRUTH)))
    assert saved["leaf_purity"] == pytest.approx(float(leaf_purity(logits, y)))
    assert saved["level1/acc"] == pytest.approx(float(level_scores(tree, logits, y, TRUTH)["level1/acc"]))
    assert acc.Scalars("l2h/dp")[-1].value == pytest.approx(saved["dp"])
    assert saved["drift"] == pytest.approx(monitor.history[-1]["drift"])
    assert monitor.last_files["png"] == folder / "epoch_0002_step_000024.png"
    assert monitor.last_files["png"].exists()
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]

    # the insight: the most surprising merges and the suggested cuts, from the same tree and counts
    counts = contingency_table(logits, y, K, K)
    surprises = surprising_merges(tree, TRUTH, counts=counts, names=NAMES, group_names=GROUPS, top=5)
    surprises = [r for r in surprises if r["surprise"] > 0]  # merges without a contradiction are not listed
    assert surprises
    assert [r["node"] for r in saved["surprises"]] == [r["node"] for r in surprises]
    assert [r["surprise"] for r in saved["surprises"]] == pytest.approx([r["surprise"] for r in surprises])
    assert [c["groups"] for c in saved["cuts"]] == suggest_cuts(tree) != []
    first = saved["cuts"][0]
    assert sorted(sum(first["members"], [])) == sorted(NAMES) and len(first["members"]) == first["groups"]
    groups = tree.cut(first["groups"])
    assert saved["cut1/groups"] == first["groups"]
    assert saved["cut1/level1/nmi"] == pytest.approx(normalized_mutual_info_score(
        [int(TRUTH.levels[0][c]) for c in y], [int(groups[k]) for k in logits.argmax(1)]))
    table = acc.Tensors("l2h/surprises/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.count("\n") == 1 + len(surprises) and surprises[0]["label"] in table
    cuts = acc.Tensors("l2h/cuts/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert all(name in cuts for name in NAMES)


def test_mid_epoch_validation_keeps_every_run(tmp_path):
    monitor = L2HMonitor()
    trainer = Trainer(callbacks=[monitor], logger=TensorBoardLogger(tmp_path), **trainer_kwargs(tmp_path, max_epochs=2, val_check_interval=0.5))
    trainer.fit(Classifier())
    assert [(h["epoch"], h["global_step"]) for h in monitor.history] == [(0, 4), (0, 8), (1, 12), (1, 16)]
    files = sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0" / "l2h").glob("*.json"))
    assert files == ["epoch_0000_step_000004.json", "epoch_0000_step_000008.json",
                     "epoch_0001_step_000012.json", "epoch_0001_step_000016.json"]
    acc = events(trainer.logger.log_dir)
    assert [e.step for e in acc.Images("l2h/dendrogram")] == [e.step for e in acc.Scalars("l2h/dp")]
    assert len(acc.Images("l2h/dendrogram")) == 4


def test_validate_and_test_from_a_checkpoint_name_its_epoch(tmp_path, caplog):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    Trainer(callbacks=[L2HMonitor(log_images=False), ckpt], logger=False, **trainer_kwargs(tmp_path, enable_checkpointing=True)).fit(Classifier())
    monitor = L2HMonitor(target_hierarchy=TRUTH)
    trainer = Trainer(callbacks=[monitor], logger=TensorBoardLogger(tmp_path / "eval"), **trainer_kwargs(tmp_path))
    model = Classifier()
    results = trainer.validate(model, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert monitor.history[-1]["epoch"] == 2 and monitor.history[-1]["global_step"] == 24
    logits, y = val_logits(model)  # the checkpoint's weights
    assert results[0]["l2h/dp"] == pytest.approx(float(dendrogram_purity(l2h(logits), logits, y)))
    folder = tmp_path / "eval" / "lightning_logs" / "version_0" / "l2h"
    assert (folder / "validate_epoch_0002_step_000024.json").exists()

    tested = trainer.test(model, dataloaders=DataLoader(make_data(200, 5), batch_size=64), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    x, y = make_data(200, 5).tensors
    with torch.no_grad():
        logits = model.net(x)
    assert tested[0]["l2h/test/dp"] == pytest.approx(float(dendrogram_purity(l2h(logits), logits, y)))
    assert monitor.test_hierarchies[0] == l2h(logits)
    assert monitor.hierarchy == l2h(val_logits(model)[0])  # the validation tree (and its drift chain) stays
    assert (tmp_path / "eval" / "lightning_logs" / "version_0" / "l2h" / "test" / "test_epoch_0002_step_000024.json").exists()

    with caplog.at_level(logging.INFO):
        trainer.predict(model, dataloaders=DataLoader(make_data(20, 5), batch_size=10))
        trainer.predict(model, dataloaders=DataLoader(make_data(20, 5), batch_size=10))
    assert caplog.text.count("trainer.predict is not watched") == 1


def test_sanity_check_catches_a_loss_only_validation_step(tmp_path):
    trainer = Trainer(callbacks=[L2HMonitor()], logger=False, **trainer_kwargs(tmp_path))
    with pytest.raises(ValueError, match=r"got shape \(\) .*a loss\?"):
        trainer.fit(Classifier(output="loss"))
    assert trainer.global_step == 0  # refused at the sanity check, before any training


def test_missing_target_says_what_is_not_computed_at_the_sanity_check(tmp_path, caplog):
    trainer = Trainer(callbacks=[L2HMonitor()], logger=False, **trainer_kwargs(tmp_path, max_epochs=1, limit_train_batches=0))
    with caplog.at_level(logging.INFO):
        trainer.fit(Classifier(output="no-target"))
    lines = [r.getMessage() for r in caplog.records if "L2HMonitor" in r.getMessage()]
    assert len(lines) == 1 and "no 'target' in the validation outputs" in lines[0]
    assert "dp, lhd, leaf_purity and the level scores need the targets" in lines[0]
    assert trainer.global_step == 0  # said at the sanity check (no training batch ran)


def test_kept_logits_are_compact_copies(tmp_path):
    """A slice of a big tensor must not keep the big tensor's storage alive until the epoch ends."""
    big = torch.randn(5000, K)
    monitor = L2HMonitor(log_images=False, extract=lambda o, b: (big[: len(b[1])], b[1].repeat(3)[: len(b[1])]))
    held = []

    class Probe(Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            held.append(sum(t.untyped_storage().nbytes() for pair in monitor._batches[0] for t in pair))

    Trainer(callbacks=[monitor, Probe()], logger=False, **trainer_kwargs(tmp_path, max_epochs=1, num_sanity_val_steps=0)).fit(Classifier())
    sizes = [len(b[1]) for b in DataLoader(make_data(300, 1), batch_size=64)]
    assert held == [sum(sizes[: i + 1]) * (K * 4 + 8) for i in range(len(sizes))]


def test_validate_only_on_a_trained_model_with_clade_support(tmp_path):
    monitor = L2HMonitor(target_hierarchy=TRUTH, support_every_n_epochs=1, support_boot=6)
    model = Classifier()
    trainer = Trainer(callbacks=[monitor], logger=TensorBoardLogger(tmp_path), **trainer_kwargs(tmp_path))
    results = trainer.validate(model)
    logits, y = val_logits(model)
    assert monitor.hierarchy == l2h(logits)
    assert results[0]["l2h/dp"] == pytest.approx(float(dendrogram_purity(l2h(logits), logits, y)))
    assert "l2h/drift" not in results[0]
    support = clade_support(logits, l2h(logits), n_boot=6)
    assert torch.equal(monitor.insights[0]["support"], support)
    assert results[0]["l2h/support_mean"] == pytest.approx(float(support[:-1].mean()))
    assert 0 < results[0]["l2h/support_seconds"] < results[0]["l2h/seconds"]
    record = json.loads(monitor.last_files["json"].read_text())
    assert record["support"] == pytest.approx(support.tolist())
    page = monitor.last_files["html"].read_text()
    data = json.loads(page.split('id="l2h-data">', 1)[1].split("</script>", 1)[0])  # what the page shows
    assert data["sup"] == pytest.approx(support.tolist(), abs=1e-6)
    assert data["sur"] and len(data["sur"]) == len(monitor.insights[0]["surprises"])


def test_no_logger_writes_under_default_root_dir(tmp_path, caplog):
    monitor = L2HMonitor()
    trainer = Trainer(callbacks=[monitor], logger=False, **trainer_kwargs(tmp_path, max_epochs=1))
    with caplog.at_level(logging.INFO):
        trainer.fit(Classifier())
    assert "l2h/dp" in trainer.callback_metrics
    assert sorted(p.name for p in (tmp_path / "l2h").iterdir()) == [
        f"epoch_0000_step_000008{end}" for end in (".html", ".json", ".md", ".png", "_cuts.md", "_dendrogram_full.png")
    ]
    assert caplog.text.count("no TensorBoard, W&B, MLflow or CSV logger") == 1


def test_tensor_outputs_log_the_tree_without_scores(tmp_path):
    monitor = L2HMonitor(log_images=False)
    trainer = Trainer(callbacks=[monitor], logger=False, **trainer_kwargs(tmp_path, max_epochs=2))
    trainer.fit(Classifier(output="tensor"))
    assert {"l2h/drift", "l2h/empty_clusters", "l2h/seconds"} <= set(trainer.callback_metrics)
    assert "l2h/dp" not in trainer.callback_metrics


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
    monitor = L2HMonitor(log_images=False, every_n_epochs=2)
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
    first = L2HMonitor(log_images=False)
    Trainer(callbacks=[first, ckpt], logger=False, **trainer_kwargs(tmp_path, max_epochs=2, enable_checkpointing=True)).fit(Classifier())
    second = L2HMonitor(log_images=False)
    trainer = Trainer(callbacks=[second], logger=False, **trainer_kwargs(tmp_path, max_epochs=3))
    trainer.fit(Classifier(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert [h["epoch"] for h in second.history] == [0, 1, 2]
    assert second.history[-1]["drift"] == pytest.approx(float(tree_distance(first.hierarchy, second.hierarchy)))
    assert "l2h/drift" in trainer.callback_metrics


def test_no_pyplot_figures_stay_open(tmp_path):
    before = plt.get_fignums()
    monitor = L2HMonitor(class_names=NAMES, target_hierarchy=TRUTH, support_every_n_epochs=1, support_boot=2)
    Trainer(callbacks=[monitor], logger=TensorBoardLogger(tmp_path), **trainer_kwargs(tmp_path, max_epochs=1)).fit(Classifier())
    assert monitor.last_files["png"].exists()  # pictures with support and surprise marks were drawn
    assert plt.get_fignums() == before == []


def test_k_changing_between_epochs(tmp_path):
    def extract(outputs, batch):
        logits = outputs["logits"]
        return (logits if trainer.current_epoch == 0 else logits[:, :5]), batch[1].clamp(max=4)

    trainer = Trainer(callbacks=[L2HMonitor(log_images=False, extract=extract)], logger=False, **trainer_kwargs(tmp_path, num_sanity_val_steps=0))
    with pytest.raises(ValueError, match="K changed between epochs: 6 before, 5 now"):
        trainer.fit(Classifier())


def test_max_samples_and_store_dtype(tmp_path):
    monitor = L2HMonitor(log_images=False, max_samples=100, store_dtype=torch.float16)
    with pytest.warns(UserWarning, match="max_samples=100 reached"):
        Trainer(callbacks=[monitor], logger=False, **trainer_kwargs(tmp_path, max_epochs=1)).fit(model := Classifier())
    logits, _ = val_logits(model)
    assert monitor.hierarchy == l2h(logits[:100].half())
