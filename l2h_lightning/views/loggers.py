"""Send images, text, an HTML file and a JSON record to every logger of a Lightning `Trainer`.

Loggers are recognised by what they are (their class names along the MRO, or what their ``experiment`` offers),
not by one package's classes, so the loggers of ``lightning.pytorch`` and of the standalone ``pytorch_lightning``
package are treated alike:

- TensorBoard (``experiment.add_image``/``add_text``): images and markdown text at the given step;
- Weights & Biases: ``log_image``, ``log_text`` (a table), the HTML as ``wandb.Html``, the files saved into the run;
- MLflow (its ``MlflowClient`` and ``run_id``): ``log_image`` (key and step), ``log_text``, ``log_dict``, and the
  HTML/PNG files with ``log_artifact``;
- CSV: the files in its ``log_dir``.

Files are written into the run's own directory (`run_dir`), never into the working directory unless the Trainer's
``default_root_dir`` is it. Only global rank 0 writes anything.

Example:
    >>> import numpy as np
    >>> from lightning.pytorch import Trainer
    >>> trainer = Trainer(logger=False, default_root_dir="l2h_out/doc", enable_progress_bar=False)
    >>> pub = Publication(stem="step_000000", step=0, prefix="l2h", record={"dp": 0.5},
    ...                   images={"dendrogram": (np.zeros((8, 8, 3), np.uint8), "a caption")}, text="tree")
    >>> sorted(p.name for p in publish(trainer, pub).values())
    ['step_000000.json', 'step_000000.md', 'step_000000.png']
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Publication", "logger_kind", "markdown_table", "publish", "run_dir"]


@dataclass
class Publication:
    """What one validation run publishes.

    Args:
        stem: file-name stem, unique per run (e.g. ``epoch_0003_step_000123``).
        step: the step every logger files it under (the same as the scalars').
        prefix: the name prefix (``l2h``); keys are ``{prefix}/{name}{suffix}``.
        suffix: appended to every key (e.g. ``/dataloader_idx_1``).
        images: ``name -> (HWC uint8 array, caption)``; the first one is the main image, saved as ``{stem}.png``,
            the others as ``{stem}_{name}.png``.
        text: markdown, logged as ``{prefix}/tree``.
        tables: ``name -> (columns, rows)``, logged as ``{prefix}/{name}``: a markdown table in TensorBoard and
            MLflow (``{stem}_{name}.md``), a table in W&B; also saved as ``{stem}_{name}.md``.
        html: an HTML file already written into the run directory (optional).
        record: the JSON record, saved as ``{stem}.json``.
    """

    stem: str
    step: int
    prefix: str = "l2h"
    suffix: str = ""
    images: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    text: str | None = None
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    html: Path | None = None
    record: dict[str, Any] | None = None

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}{self.suffix}"


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (TensorBoard renders it); ``|`` inside cells is escaped.

    Example:
        >>> print(markdown_table(["n", "name"], [[1, "a|b"]]))
        | n | name |
        |---|---|
        | 1 | a\\|b |
    """
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _class_names(logger: Any) -> set[str]:
    return {cls.__name__ for cls in type(logger).__mro__}


def logger_kind(logger: Any) -> str | None:
    """``"tensorboard"``, ``"wandb"``, ``"mlflow"``, ``"csv"``, or None for a logger this module does not know."""
    names = _class_names(logger)
    if "TensorBoardLogger" in names:
        return "tensorboard"
    if "WandbLogger" in names:
        return "wandb"
    if "MLFlowLogger" in names:
        return "mlflow"
    if "CSVLogger" in names:
        return "csv"
    # other classes: by their experiment (only touched for loggers not recognised by name; it may start a run)
    try:
        experiment = logger.experiment
    except Exception:  # a logger whose experiment cannot be created here is not ours to drive
        return None
    module = type(experiment).__module__ or ""
    if hasattr(type(experiment), "add_image") and hasattr(type(experiment), "add_text"):
        return "tensorboard"
    if module.startswith("wandb") and hasattr(logger, "log_image"):
        return "wandb"
    if module.startswith("mlflow") and getattr(logger, "run_id", None):
        return "mlflow"
    if hasattr(experiment, "metrics_file_path"):
        return "csv"
    return None


def _local_dir(logger: Any, kind: str | None) -> Path | None:
    """The logger's own directory on this machine, if it has one."""
    if kind in ("tensorboard", "csv"):
        return Path(logger.log_dir)
    if kind == "wandb":
        directory = getattr(logger.experiment, "dir", None)  # the run's files folder (synced with the run)
        return Path(directory) if directory else None
    if kind == "mlflow":  # its artifact store is written through its client only
        return None
    directory = getattr(logger, "log_dir", None)
    return Path(directory) if isinstance(directory, (str, Path)) and directory else None


def run_dir(trainer: Any) -> Path:
    """Where a run's files go: the first logger's own directory, else ``trainer.default_root_dir``.

    Rank 0 only: it reads the loggers' directories directly (``trainer.log_dir`` would broadcast).
    """
    for logger in trainer.loggers:
        directory = _local_dir(logger, logger_kind(logger))
        if directory is not None:
            return directory
    return Path(trainer.default_root_dir)


def publish(trainer: Any, pub: Publication, loggers: Iterable[Any] | None = None) -> dict[str, Path]:
    """Write `pub`'s files into ``run_dir(trainer)/prefix`` and send everything to every logger.

    Returns the written files by role (``json``, ``png``, ``{name}_png``, ``md``, ``html``); nothing on ranks other
    than 0.
    """
    if not getattr(trainer, "is_global_zero", True):
        return {}
    loggers = list(trainer.loggers if loggers is None else loggers)
    out = run_dir(trainer) / pub.prefix
    out.mkdir(parents=True, exist_ok=True)
    files = _write_files(out, pub)
    for logger in loggers:
        kind = logger_kind(logger)
        if kind == "tensorboard":
            _to_tensorboard(logger.experiment, pub)
        elif kind == "wandb":
            _to_wandb(logger, pub, files)
        elif kind == "mlflow":
            _to_mlflow(logger, pub, files)
        elif kind == "csv":
            target = Path(logger.log_dir) / pub.prefix
            if target.resolve() != out.resolve():
                target.mkdir(parents=True, exist_ok=True)
                for path in files.values():
                    shutil.copy2(path, target / path.name)
    return files


def _write_files(out: Path, pub: Publication) -> dict[str, Path]:
    from matplotlib.image import imsave

    files: dict[str, Path] = {}
    if pub.record is not None:
        files["json"] = out / f"{pub.stem}.json"
        files["json"].write_text(json.dumps(pub.record, indent=1))
    for i, (name, (image, _)) in enumerate(pub.images.items()):
        role, path = ("png", out / f"{pub.stem}.png") if i == 0 else (f"{name}_png", out / f"{pub.stem}_{name}.png")
        imsave(path, image)
        files[role] = path
    if pub.text is not None:
        files["md"] = out / f"{pub.stem}.md"
        files["md"].write_text(pub.text)
    for name, table in pub.tables.items():
        files[f"{name}_md"] = out / f"{pub.stem}_{name}.md"
        files[f"{name}_md"].write_text(markdown_table(*table))
    if pub.html is not None:
        files["html"] = Path(pub.html)
    return files


def _to_tensorboard(writer: Any, pub: Publication) -> None:
    for name, (image, _) in pub.images.items():
        writer.add_image(pub.key(name), image, pub.step, dataformats="HWC")
    if pub.text is not None:
        writer.add_text(pub.key("tree"), pub.text, pub.step)
    for name, table in pub.tables.items():
        writer.add_text(pub.key(name), markdown_table(*table), pub.step)


def _to_wandb(logger: Any, pub: Publication, files: dict[str, Path]) -> None:
    import wandb

    for name, (image, caption) in pub.images.items():
        logger.log_image(key=pub.key(name), images=[image], step=pub.step, caption=[caption])
    if pub.text is not None:
        logger.log_text(key=pub.key("tree"), columns=["tree"], data=[[pub.text]], step=pub.step)
    for name, (columns, rows) in pub.tables.items():
        logger.log_text(key=pub.key(name), columns=columns, data=[[str(v) for v in row] for row in rows], step=pub.step)
    if "html" in files:
        logger.log_metrics({pub.key("tree_html"): wandb.Html(files["html"].read_text(), inject=False)}, pub.step)
    run_files = getattr(logger.experiment, "dir", None)
    for path in files.values():  # the files, in the run (a no-op when they were written there already)
        if run_files and Path(run_files).resolve() not in path.resolve().parents:
            target = Path(run_files) / pub.prefix
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.name)


def _to_mlflow(logger: Any, pub: Publication, files: dict[str, Path]) -> None:
    client, run_id = logger.experiment, logger.run_id
    folder = pub.prefix + pub.suffix.replace("/", "_")
    for name, (image, _) in pub.images.items():
        # key + step: MLflow's image gallery with a step slider ("/" is not allowed in image keys)
        client.log_image(run_id, image, key=pub.key(name).replace("/", "."), step=pub.step)
    if pub.text is not None:
        client.log_text(run_id, pub.text, f"{folder}/{pub.stem}.md")
    for name, table in pub.tables.items():
        client.log_text(run_id, markdown_table(*table), f"{folder}/{pub.stem}_{name}.md")
    if pub.record is not None:
        client.log_dict(run_id, pub.record, f"{folder}/{pub.stem}.json")
    for role in ("png", "html"):
        if role in files:
            client.log_artifact(run_id, str(files[role]), folder)
