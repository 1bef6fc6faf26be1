"""`L2HMonitor`: watch the class hierarchy a model learns, every validation epoch."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics.utilities.distributed import gather_all_tensors

from .engine import AGGREGATIONS, l2h
from .hierarchy import Hierarchy
from .metrics.functional import contingency_table, tree_distance
from .metrics.functional.hierarchy_scores import _hierarchy_scores_compute

Extract = Callable[[Any, Any], "tuple[torch.Tensor, torch.Tensor | None]"]


class L2HMonitor(Callback):
    """Build the L2H tree over the classes from the validation logits, score it and log it, every epoch.

    Args:
        logits_key: key of the logits (N, K) in what ``validation_step`` returns (a dict); a returned tensor is
            taken as the logits.
        target_key: key of the class ids (N,) in that dict. Optional: without targets the tree, drift and
            empty-cluster count are logged, not DP, LHD, leaf purity or level scores.
        extract: ``extract(outputs, batch) -> (logits, target or None)`` for any other output format.
        every_n_epochs: compute every n-th epoch (epochs n-1, 2n-1, ...); ``trainer.validate`` always computes.
        class_names: K names for the dendrogram, the text outline and the saved JSON.
        target_hierarchy: ground-truth tree over the classes (e.g. ``Hierarchy.from_levels``): LHD against it,
            level scores for its levels, and dendrogram leaves coloured by its coarsest level.
        aggregation: the L2H variant (see `l2h`).
        max_samples: keep at most this many validation points per process and dataloader (the first ones; a
            warning says when the cap is reached).
        store_dtype: cast kept logits to this dtype (e.g. ``torch.float16`` halves their memory).
        log_images: log the dendrogram image and the tree text to TensorBoard (and save the PNG).
        prefix: prefix of every logged name.
        history: how many past results `history` keeps (also saved in checkpoints).

    Logged every computed epoch, identically on every process (so ``ModelCheckpoint(monitor="l2h/dp")`` and
    ``EarlyStopping`` work under DDP): ``l2h/dp``, ``l2h/lhd``, ``l2h/leaf_purity``, ``l2h/level{i}/{nmi,ari,acc}``,
    ``l2h/drift`` (tree distance to the previous tree), ``l2h/empty_clusters``, ``l2h/seconds``. On global rank 0:
    the image ``l2h/dendrogram`` and text ``l2h/tree`` to every TensorBoard logger, and ``l2h/epoch_XXXX.json``
    (+ ``.png``) under the first logger's ``log_dir``. Several validation dataloaders get one tree each, logged
    with a ``/dataloader_idx_N`` suffix.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> monitor = L2HMonitor(class_names=["cat", "dog", "car"])
        >>> trainer = Trainer(callbacks=[monitor], logger=False, enable_progress_bar=False)
    """

    def __init__(
        self,
        logits_key: str = "logits",
        target_key: str = "target",
        extract: Extract | None = None,
        every_n_epochs: int = 1,
        class_names: Sequence[str] | None = None,
        target_hierarchy: Hierarchy | None = None,
        aggregation: str = "cluster_mean",
        max_samples: int | None = None,
        store_dtype: torch.dtype | None = None,
        log_images: bool = True,
        prefix: str = "l2h",
        history: int = 100,
    ) -> None:
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be a positive int, got {every_n_epochs!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
            raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
        if store_dtype is not None and not (isinstance(store_dtype, torch.dtype) and store_dtype.is_floating_point):
            raise ValueError(f"store_dtype must be a floating-point torch.dtype, got {store_dtype!r}")
        if extract is not None and not callable(extract):
            raise ValueError(f"extract must be callable (outputs, batch) -> (logits, target), got {extract!r}")
        if target_hierarchy is not None and not isinstance(target_hierarchy, Hierarchy):
            raise ValueError(f"target_hierarchy must be a Hierarchy, got {type(target_hierarchy).__name__}")
        if class_names is not None and target_hierarchy is not None and len(class_names) != target_hierarchy.num_leaves:
            raise ValueError(
                f"class_names has {len(class_names)} names but target_hierarchy has {target_hierarchy.num_leaves} classes"
            )
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive int, got {history!r}")
        self.logits_key, self.target_key, self.extract = logits_key, target_key, extract
        self.every_n_epochs = every_n_epochs
        self.class_names = list(class_names) if class_names is not None else None
        self.target_hierarchy = target_hierarchy
        self.aggregation, self.max_samples, self.store_dtype = aggregation, max_samples, store_dtype
        self.log_images, self.prefix, self.history_size = log_images, prefix, history
        self.hierarchies: dict[int, Hierarchy] = {}  # the last tree of every dataloader
        self.history: list[dict[str, Any]] = []  # the last results, oldest first
        self.last_files: dict[str, Path] = {}
        self._batches: dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
        self._kept: dict[int, int] = {}  # points kept per dataloader this validation run
        self._warned: set[str] = set()
        self._ran_this_epoch: tuple[Any, int] | None = None

    @property
    def hierarchy(self) -> Hierarchy | None:
        """The last tree learned (first validation dataloader)."""
        return self.hierarchies.get(0)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(prefix=self.prefix, logits_key=self.logits_key)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Our values are computed once and broadcast, so they are identical on every process: Lightning's advice
        # to sync them does not apply (and syncing would pair collectives across different hooks).
        warnings.filterwarnings("ignore", message=rf"It is recommended to use `self.log\('{re.escape(self.prefix)}/")

    # ------------------------------------------------------------------------------------------- collect
    def _active(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        return not trainer.training and (
            trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches, self._kept = {}, {}

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._active(trainer):
            return
        logits, target = self._unpack(outputs, batch)
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ValueError(f"the logits must be a floating-point (N, K) tensor, got shape {tuple(logits.shape)} and dtype {logits.dtype}")
        if target is not None and (target.ndim != 1 or target.shape[0] != logits.shape[0]):
            raise ValueError(f"the target must be class ids (N,) for the {logits.shape[0]} rows of logits, got shape {tuple(target.shape)}")
        batches = self._batches.setdefault(dataloader_idx, [])
        if batches and batches[0][0].shape[1] != logits.shape[1]:
            raise ValueError(f"the number of classes K changed between batches: {batches[0][0].shape[1]} before, {logits.shape[1]} now")
        if batches and (batches[0][1] is None) != (target is None):
            raise ValueError("some validation batches came with a target and some without: give it for all or none")
        if self.max_samples is not None:
            room = self.max_samples - self._kept.get(dataloader_idx, 0)
            if room < logits.shape[0]:
                self._warn_once("max_samples", f"L2HMonitor: max_samples={self.max_samples} reached; keeping the first {self.max_samples} validation points")
                if room <= 0:
                    return
                logits, target = logits[:room], None if target is None else target[:room]
        logits = logits.detach().to(self.store_dtype) if self.store_dtype else logits.detach()
        batches.append((logits, None if target is None else target.detach()))
        self._kept[dataloader_idx] = self._kept.get(dataloader_idx, 0) + logits.shape[0]

    def _unpack(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.extract is not None:
            return self.extract(outputs, batch)
        if isinstance(outputs, torch.Tensor):
            return outputs, None
        if isinstance(outputs, dict):
            if self.logits_key not in outputs:
                raise ValueError(
                    f"validation_step returned a dict without {self.logits_key!r} (keys: {sorted(map(str, outputs))}); "
                    "set logits_key= or pass extract="
                )
            if self.target_key not in outputs:
                self._warn_once("target", f"L2HMonitor: no {self.target_key!r} in the validation outputs: logging the tree and drift only")
            return outputs[self.logits_key], outputs.get(self.target_key)
        raise ValueError(
            f"validation_step returned {type(outputs).__name__}; return the logits, a dict with {self.logits_key!r} "
            f"(and {self.target_key!r}), or pass extract=(outputs, batch) -> (logits, target)"
        )

    # ------------------------------------------------------------------------------------------- compute
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._round(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A process without validation batches skips Lightning's validation loop: join the others' round here.
        if trainer.world_size > 1 and self._skipped_validation(trainer):
            self._round(trainer, pl_module)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # the same for trainer.validate; Lightning allows no self.log here, and this process validated nothing
        if stage == "validate" and trainer.world_size > 1 and self._skipped_validation(trainer):
            self._round(trainer, pl_module, log=False)

    def _skipped_validation(self, trainer: Trainer) -> bool:
        ran = self._ran_this_epoch == (trainer.state.fn, trainer.current_epoch)
        scheduled = trainer.state.fn != "fit" or (
            trainer.enable_validation
            and (trainer.current_epoch + 1) % (trainer.check_val_every_n_epoch or 1) == 0
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )
        return scheduled and not ran and sum(trainer.num_val_batches or [0]) == 0

    def _round(self, trainer: Trainer, pl_module: LightningModule, log: bool = True) -> None:
        """Gather every dataloader's points from every process, compute on rank 0, share, log."""
        self._ran_this_epoch = (trainer.state.fn, trainer.current_epoch)
        n_loaders = max(len(trainer.num_val_batches or []), 1)
        for idx in range(n_loaders):
            logits, target = self._gather(self._batches.get(idx, []), pl_module.device)
            result: dict[str, Any] | None = None
            if trainer.is_global_zero and logits is not None:
                try:
                    result = {"ok": self._compute(idx, logits, target)}
                except Exception as err:  # every process raises it, instead of waiting for rank 0 forever
                    result = {"error": f"{type(err).__name__}: {err}"}
            result = trainer.strategy.broadcast(result, src=0)
            if result is None:
                continue
            if "error" in result:
                raise ValueError(f"L2HMonitor: {result['error']}")
            self._publish(trainer, pl_module, idx, n_loaders, result["ok"], log)
        self._batches = {}
        if trainer.world_size > 1:  # nobody leaves (and may exit) while a peer still receives the broadcast
            trainer.strategy.barrier("L2HMonitor")

    def _gather(self, batches: list, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """All processes' logits (and targets) for one dataloader; (None, None) when nobody has any."""
        dtype = self.store_dtype or torch.float32
        K = batches[0][0].shape[1] if batches else 0
        has_target = int(all(t is not None for _, t in batches)) if batches else -1
        local = torch.cat([b[0].to(dtype).flatten() for b in batches]) if batches else torch.empty(0, dtype=dtype, device=device)
        targets = [t for _, t in batches if t is not None]
        local_t = torch.cat(targets).long() if has_target == 1 else torch.empty(0, dtype=torch.long, device=local.device)
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return (local.view(-1, K), local_t if has_target == 1 else None) if K else (None, None)
        info = torch.stack(gather_all_tensors(torch.tensor([K, has_target], device=local.device))).tolist()
        ks = {k for k, _ in info if k}
        flags = {f for _, f in info if f >= 0}
        if len(ks) > 1 or len(flags) > 1:  # the same answer on every process: they all raise together
            raise ValueError(f"L2HMonitor: processes disagree on the number of classes or on having targets: {info}")
        if not ks:
            return None, None
        K = ks.pop()
        logits = torch.cat(gather_all_tensors(local)).view(-1, K)
        if flags != {1}:
            return logits, None
        return logits, torch.cat(gather_all_tensors(local_t))

    def _compute(self, idx: int, logits: torch.Tensor, target: torch.Tensor | None) -> dict[str, Any]:
        start = time.perf_counter()
        K = logits.shape[1]
        previous = self.hierarchies.get(idx)
        if previous is not None and previous.num_leaves != K:
            raise ValueError(f"the number of classes K changed between epochs: {previous.num_leaves} before, {K} now")
        if self.class_names is not None and len(self.class_names) != K:
            raise ValueError(f"class_names has {len(self.class_names)} names but the logits have K = {K} columns")
        tree = l2h(logits, self.aggregation)
        preds = logits.argmax(1)
        metrics: dict[str, float] = {"empty_clusters": float(K - torch.unique(preds).numel())}
        if previous is not None:
            metrics["drift"] = float(tree_distance(previous, tree))
        if target is not None:
            truth = self.target_hierarchy
            num_classes = truth.num_leaves if truth is not None else max(int(target.max()) + 1, K)
            counts = contingency_table(preds, target, K, num_classes)
            metrics.update({k: float(v) for k, v in _hierarchy_scores_compute(tree, counts, truth).items()})
        metrics["seconds"] = time.perf_counter() - start
        return {"tree": tree.to_dict(), "metrics": metrics, "num_points": logits.shape[0]}

    # ------------------------------------------------------------------------------------------- log
    def _publish(
        self, trainer: Trainer, pl_module: LightningModule, idx: int, n_loaders: int, result: dict, log: bool
    ) -> None:
        tree = Hierarchy.from_dict(result["tree"])
        metrics = result["metrics"]
        self.hierarchies[idx] = tree
        suffix = f"/dataloader_idx_{idx}" if n_loaders > 1 else ""
        for name, value in metrics.items() if log else ():
            pl_module.log(f"{self.prefix}/{name}{suffix}", value, sync_dist=False, add_dataloader_idx=False)
        entry = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "dataloader_idx": idx, **metrics}
        self.history = (self.history + [entry])[-self.history_size :]
        if trainer.is_global_zero:
            self._write(trainer, tree, entry, result["num_points"], suffix)

    def _write(self, trainer: Trainer, tree: Hierarchy, entry: dict, num_points: int, suffix: str) -> None:
        stem = f"epoch_{trainer.current_epoch:04d}" + suffix.replace("/", "_")
        out_dir = self._log_dir(trainer) / self.prefix
        out_dir.mkdir(parents=True, exist_ok=True)
        record = {**entry, "num_points": num_points, "class_names": self.class_names,
                  "newick": tree.to_newick(self.class_names), "tree": tree.to_dict()}
        self.last_files["json"] = out_dir / f"{stem}.json"
        self.last_files["json"].write_text(json.dumps(record, indent=1))
        if not self.log_images:
            return
        from matplotlib.image import imsave

        from .plotting import figure_to_array, plot_dendrogram

        title = f"L2H hierarchy, epoch {trainer.current_epoch}" + (f", dataloader {entry['dataloader_idx']}" if suffix else "")
        fig, _ = plot_dendrogram(tree, self.class_names, self._leaf_groups(tree.num_leaves), title=title)
        image = figure_to_array(fig)  # rendered once, for the PNG and for TensorBoard
        self.last_files["png"] = out_dir / f"{stem}.png"
        imsave(self.last_files["png"], image)
        tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not tensorboards:
            self._info_once("no-tb", "L2HMonitor: no TensorBoardLogger, so the dendrogram image and tree text are only saved under " + str(out_dir))
            return
        text = "```\n" + tree.to_text(self.class_names) + "\n```\n\nNewick: `" + tree.to_newick(self.class_names) + "`"
        for logger in tensorboards:
            logger.experiment.add_image(f"{self.prefix}/dendrogram{suffix}", image, trainer.global_step, dataformats="HWC")
            logger.experiment.add_text(f"{self.prefix}/tree{suffix}", text, trainer.global_step)

    def _leaf_groups(self, K: int) -> list[int] | None:
        """Each class's coarse ground-truth group, for colouring the leaves."""
        truth = self.target_hierarchy
        return truth.coarse_groups() if truth is not None and truth.num_leaves == K else None

    @staticmethod
    def _log_dir(trainer: Trainer) -> Path:
        # not trainer.log_dir: that broadcasts, and only rank 0 gets here
        for logger in trainer.loggers:
            path = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
            if path:
                return Path(path)
        return Path(trainer.default_root_dir)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    def _info_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_info(message)

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"hierarchies": {i: t.to_dict() for i, t in self.hierarchies.items()}, "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.hierarchies = {int(i): Hierarchy.from_dict(t) for i, t in state_dict.get("hierarchies", {}).items()}
        self.history = list(state_dict.get("history", []))
