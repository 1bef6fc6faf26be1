"""L2HMonitor's pictures, text, HTML and JSON reach every logger, read back through each logger's own files/APIs.

Real loggers: TensorBoard (EventAccumulator), W&B (offline run in tmp), MLflow (sqlite store in tmp), CSV; with
`lightning.pytorch` and with the standalone `pytorch_lightning` package.
"""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from l2h_lightning import Hierarchy, L2HMonitor
from l2h_lightning.views.loggers import logger_kind, run_dir
from lightning_helpers import SUPER, Classifier, ClassifierSteps, trainer_kwargs

NAMES = ["cat", "dog", "fox", "car", "bus", "van"]
TRUTH = Hierarchy.from_levels([SUPER])


def monitor():
    return L2HMonitor(class_names=NAMES, target_hierarchy=TRUTH, group_names=["animals", "vehicles"])


def tensorboard_steps(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    images = acc.Images("l2h/dendrogram")
    text = acc.Tensors("l2h/tree/text_summary")
    assert len(acc.Images("l2h/dendrogram_full")) == len(images)
    assert images and images[-1].width > 300 and "cat" in text[-1].tensor_proto.string_val[0].decode()
    for table in ("surprises", "cuts"):  # the insight tables, one per validation run
        rows = acc.Tensors(f"l2h/{table}/text_summary")
        assert len(rows) == len(images) and rows[-1].tensor_proto.string_val[0].decode().startswith("| rank |")
    return [e.step for e in acc.Scalars("l2h/dp")], [e.step for e in images], [e.step for e in text]


def test_every_logger_gets_images_text_html_and_json(tmp_path, monkeypatch):
    import mlflow
    import wandb
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # nothing may land in the working directory: checked below
    (tmp_path / "wandb").mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tb = TensorBoardLogger(tmp_path / "tb", name="run")
    csv = CSVLogger(tmp_path / "csv", name="run")
    wb = WandbLogger(project="l2h-test", save_dir=str(tmp_path / "wandb"), offline=True)
    ml = MLFlowLogger(experiment_name="l2h-test", tracking_uri=uri, artifact_location=str(tmp_path / "mlartifacts"))
    assert [logger_kind(lg) for lg in (tb, csv, wb, ml)] == ["tensorboard", "csv", "wandb", "mlflow"]
    trainer = Trainer(callbacks=[monitor()], logger=[tb, csv, wb, ml], **trainer_kwargs(tmp_path, max_epochs=2))
    try:
        trainer.fit(Classifier())
        wandb_files = Path(wb.experiment.dir)
    finally:
        wandb.finish()

    # TensorBoard: image, text and scalars at one step per validation run; the files in its log_dir
    scalars, images, texts = tensorboard_steps(tb.log_dir)
    assert scalars == images == texts and len(set(scalars)) == 2
    assert run_dir(trainer) == Path(tb.log_dir)
    stems = ["epoch_0000_step_000008", "epoch_0001_step_000016"]
    for folder in (Path(tb.log_dir) / "l2h", Path(csv.log_dir) / "l2h", wandb_files / "l2h"):
        for stem in stems:
            for end in (".json", ".png", ".md", ".html", "_surprises.md", "_cuts.md"):
                assert (folder / f"{stem}{end}").stat().st_size > 0, folder / f"{stem}{end}"
    record = json.loads((Path(csv.log_dir) / "l2h" / f"{stems[-1]}.json").read_text())
    assert record["group_names"] == ["animals", "vehicles"] and "dp" in record
    assert "l2h/dp" in (Path(csv.log_dir) / "metrics.csv").read_text()

    # W&B (offline): the logged media are in the run's files
    media = {p.relative_to(wandb_files / "media").parts[0] for p in (wandb_files / "media").rglob("*") if p.is_file()}
    assert {"images", "table", "html"} <= media
    images = sorted(p.name.split("_")[0] for p in (wandb_files / "media" / "images").rglob("*.png"))
    assert images == ["dendrogram"] * 4  # card and full dendrogram, two validation runs
    tables = {p.name.split("_")[0]: p.read_text() for p in (wandb_files / "media" / "table").rglob("*.json")}
    assert set(tables) == {"tree", "surprises", "cuts"} and "cat" in tables["tree"]
    assert '"surprise"' in tables["surprises"] and '"classes"' in tables["cuts"]

    # MLflow: read back through its client
    client = mlflow.MlflowClient(tracking_uri=uri)
    listed = {a.path for a in client.list_artifacts(ml.run_id, "l2h")}
    for stem in stems:
        assert {f"l2h/{stem}.json", f"l2h/{stem}.md", f"l2h/{stem}.png", f"l2h/{stem}.html"} <= listed
        assert {f"l2h/{stem}_surprises.md", f"l2h/{stem}_cuts.md"} <= listed
    local = Path(client.download_artifacts(ml.run_id, f"l2h/{stems[-1]}.json", str(tmp_path / "down")))
    assert json.loads(local.read_text())["dp"] == pytest.approx(record["dp"])
    assert [a.path for a in client.list_artifacts(ml.run_id) if a.path == "images"], "no image gallery entries"
    assert client.get_metric_history(ml.run_id, "l2h/dp")

    assert list(Path.cwd().iterdir()) == []  # nothing written to the working directory


def test_standalone_pytorch_lightning_package(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    class PLClassifier(ClassifierSteps, pl.LightningModule):
        pass

    tb = TensorBoardLogger(tmp_path / "tb", name="run")
    csv = CSVLogger(tmp_path / "csv", name="run")
    assert [logger_kind(lg) for lg in (tb, csv)] == ["tensorboard", "csv"]
    kwargs = trainer_kwargs(tmp_path, max_epochs=1)
    pl.Trainer(callbacks=[monitor()], logger=[tb, csv], **kwargs).fit(PLClassifier())
    scalars, images, texts = tensorboard_steps(tb.log_dir)
    assert scalars == images == texts and len(scalars) == 1
    assert (Path(csv.log_dir) / "l2h" / "epoch_0000_step_000008.png").exists()
