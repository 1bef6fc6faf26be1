"""`L2HMonitor`: watch the class hierarchy a model learns, every validation epoch (and on test runs)."""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from .analysis import _all_sum, _jsonable
from .engine import AGGREGATIONS, l2h
from .explain import clade_support, suggest_cuts, surprising_merges
from .hierarchy import Hierarchy
from .metrics.functional import contingency_table, tree_distance
from .metrics.functional.hierarchy_scores import _hierarchy_scores_compute
from .metrics.functional.level_scores import _acc, _ari, _nmi

Extract = Callable[[Any, Any], "tuple[torch.Tensor, torch.Tensor | None]"]
TARGET_METRICS = "dp, lhd, leaf_purity and the level scores"


class L2HMonitor(Callback):
    """Build the L2H tree over the classes from the validation logits, score it and log it, every epoch.

    Args:
        logits_key: key of the logits (N, K) in what ``validation_step`` returns (a dict); a returned tensor is
            taken as the logits.
        target_key: key of the class ids (N,) in that dict. Optional: without targets the tree, drift and
            empty-cluster count are logged, not DP, LHD, leaf purity or level scores (one info line says so).
        extract: ``extract(outputs, batch) -> (logits, target or None)`` for any other output format.
        every_n_epochs: compute every n-th epoch (epochs n-1, 2n-1, ...); ``trainer.validate``/``test`` always do.
        class_names: K names for the dendrogram, the text outline and the saved JSON.
        target_hierarchy: ground-truth tree over the classes (e.g. ``Hierarchy.from_levels``): LHD against it,
            level scores for its levels, and dendrogram leaves coloured by its coarsest level.
        group_names: names of `target_hierarchy`'s coarsest groups (indexed by group id), for the legends.
        aggregation: the L2H variant (see `l2h`).
        max_samples: keep at most this many validation points per process and dataloader (the first ones; a
            warning says when the cap is reached).
        store_dtype: cast kept logits to this dtype (e.g. ``torch.float16`` halves their memory; logits beyond
            its range are refused with a message naming ``store_dtype``).
        log_images: render the dendrograms and the HTML tree (and log them); the JSON record is always written.
        prefix: prefix of every logged name.
        history: how many past results `history` keeps (also saved in checkpoints).
        watch_test: also build, score and log the tree on ``trainer.test`` runs (under ``{prefix}/test/``).
        surprises: with `target_hierarchy`, log this many of the most surprising merges
            (`l2h_lightning.explain.surprising_merges`) as a table and mark them on the pictures; 0: off.
        cuts: log up to this many suggested numbers of groups (`suggest_cuts`), their groups' classes and, with
            targets and `target_hierarchy`, the cuts' level scores; 0: off.
        support_every_n_epochs: compute the clade support (`clade_support`, `support_boot` bootstrap engine runs)
            every n-th epoch (and on every validate/test run); None (default): never.
        support_boot: bootstrap replicates per support computation.

    Under DDP nothing N x K moves: each process gives its own points to the distributed engine
    (``l2h(..., process_group=...)``) and the K x C counts are all-reduced, so every process computes the same
    tree and numbers.

    Logged per computed validation run, identically on every process (so ``ModelCheckpoint(monitor="l2h/dp")`` and
    ``EarlyStopping`` work under DDP): ``l2h/dp``, ``l2h/lhd``, ``l2h/leaf_purity``, ``l2h/level{i}/{nmi,ari,acc}``,
    ``l2h/drift`` (tree distance to the previous tree), ``l2h/empty_clusters``, ``l2h/seconds``,
    ``l2h/cut{r}/groups`` and ``l2h/cut{r}/level{i}/{nmi,ari,acc}`` (r-th suggested cut), and with support
    ``l2h/support_seconds``, ``l2h/support_mean``. On global rank 0, at the step of those scalars, to every
    logger (TensorBoard, W&B, MLflow, CSV; see ``views/loggers.py``): the images ``l2h/dendrogram`` (a card
    legible at TensorBoard's size) and ``l2h/dendrogram_full`` (up to 150 subtrees), the texts ``l2h/tree``,
    ``l2h/surprises`` and ``l2h/cuts`` (tables), and the files ``l2h/epoch_EEEE_step_SSSSSS.{json,png,html}`` in
    the run's own directory. Several validation dataloaders get one tree each, logged with a
    ``/dataloader_idx_N`` suffix.

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
        *,
        group_names: Sequence[str] | None = None,
        watch_test: bool = True,
        surprises: int = 5,
        cuts: int = 3,
        support_every_n_epochs: int | None = None,
        support_boot: int = 50,
    ) -> None:
        if not isinstance(every_n_epochs, int) or isinstance(every_n_epochs, bool) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be a positive int, got {every_n_epochs!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if max_samples is not None and (not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 1):
            raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
        if store_dtype is not None and not (isinstance(store_dtype, torch.dtype) and store_dtype.is_floating_point):
            raise ValueError(f"store_dtype must be a floating-point torch.dtype, got {store_dtype!r}")
        if extract is not None and not callable(extract):
            raise ValueError(f"extract must be callable (outputs, batch) -> (logits, target), got {extract!r}")
        if target_hierarchy is not None and not isinstance(target_hierarchy, Hierarchy):
            raise ValueError(f"target_hierarchy must be a Hierarchy, got {type(target_hierarchy).__name__}")
        if class_names is not None and (isinstance(class_names, str) or not isinstance(class_names, Sequence)):
            raise ValueError(f"class_names must be a sequence of names, got {type(class_names).__name__}")
        if class_names is not None and target_hierarchy is not None and len(class_names) != target_hierarchy.num_leaves:
            raise ValueError(
                f"class_names has {len(class_names)} names but target_hierarchy has {target_hierarchy.num_leaves} classes"
            )
        if group_names is not None:
            _check_group_names(group_names, target_hierarchy)
        if not isinstance(history, int) or isinstance(history, bool) or history < 1:
            raise ValueError(f"history must be a positive int, got {history!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        for name, value in (("surprises", surprises), ("cuts", cuts)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int (0: off), got {value!r}")
        if support_every_n_epochs is not None and (
            not isinstance(support_every_n_epochs, int) or isinstance(support_every_n_epochs, bool) or support_every_n_epochs < 1
        ):
            raise ValueError(f"support_every_n_epochs must be a positive int or None (off), got {support_every_n_epochs!r}")
        if not isinstance(support_boot, int) or isinstance(support_boot, bool) or support_boot < 1:
            raise ValueError(f"support_boot must be a positive int, got {support_boot!r}")
        self.logits_key, self.target_key, self.extract = logits_key, target_key, extract
        self.every_n_epochs = every_n_epochs
        self.class_names = [str(n) for n in class_names] if class_names is not None else None
        self.target_hierarchy = target_hierarchy
        self.group_names = [str(n) for n in group_names] if group_names is not None else None
        self.aggregation, self.max_samples, self.store_dtype = aggregation, max_samples, store_dtype
        self.log_images, self.prefix, self.history_size = log_images, prefix, history
        self.watch_test = watch_test
        self.surprises, self.cuts = surprises, cuts
        self.support_every_n_epochs, self.support_boot = support_every_n_epochs, support_boot
        # the last validation's insight per dataloader: "surprises", "cuts" (records) and "support" ((K-1,) or None)
        self.insights: dict[int, dict[str, Any]] = {}
        self.hierarchies: dict[int, Hierarchy] = {}  # the last validation tree of every dataloader
        self.test_hierarchies: dict[int, Hierarchy] = {}  # the last test tree of every dataloader
        self.history: list[dict[str, Any]] = []  # the last results, oldest first
        self.last_files: dict[str, Path] = {}
        self._batches: dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
        self._kept: dict[int, int] = {}  # points kept per dataloader this run
        self._warned: set[str] = set()
        self._rounds = 0  # rounds this process took part in
        self._checkpoint_position: tuple[int, int] | None = None  # (epoch, global_step) of a loaded checkpoint
        self._trained_epoch: int | None = None  # the last epoch this Trainer trained
        self._rounds_at_start = 0  # _rounds when the current stage began

    @property
    def hierarchy(self) -> Hierarchy | None:
        """The last tree learned (first validation dataloader)."""
        return self.hierarchies.get(0)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(prefix=self.prefix, logits_key=self.logits_key)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Our values are computed from all-reduced sums, so they are identical on every process: Lightning's advice
        # to sync them does not apply (and syncing would pair collectives across different hooks).
        warnings.filterwarnings("ignore", message=rf"It is recommended to use `self.log\('{re.escape(self.prefix)}/")
        self._rounds_at_start = self._rounds
        if stage == "predict":
            self._info_once("predict", "L2HMonitor: trainer.predict is not watched (predictions come without targets "
                            "and without a validation pass); it watches validation and test runs")
        if stage == "test" and not self.watch_test:
            self._info_once("test", "L2HMonitor: trainer.test is not watched (watch_test=False)")
        if stage == "fit" and trainer.world_size > 1 and self._lightning_schedule(trainer) is None:
            if getattr(pl_module, "allow_zero_length_dataloader_with_multiple_devices", False):
                raise ValueError(
                    "L2HMonitor: this Lightning version does not expose its validation schedule, so a process without "
                    "validation batches could not join the others' collectives in time; give every process validation "
                    "data (allow_zero_length_dataloader_with_multiple_devices=False)"
                )

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._checkpoint_position = (int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0)))

    # ------------------------------------------------------------------------------------------- collect
    def _active(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking or trainer.training:
            return False
        if trainer.state.fn == "fit":
            return (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return trainer.state.fn == "validate" or (trainer.state.fn == "test" and self.watch_test)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches, self._kept = {}, {}

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking:  # check the output format now, not after an epoch of training
            self._checked(*self._unpack(outputs, batch))
        elif self._active(trainer):
            self._collect(outputs, batch, dataloader_idx)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._active(trainer):
            self._collect(outputs, batch, dataloader_idx)

    def _collect(self, outputs: Any, batch: Any, dataloader_idx: int) -> None:
        logits, target = self._checked(*self._unpack(outputs, batch))
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
        logits = logits.detach()
        if self.store_dtype is not None and logits.numel():
            largest = float(logits.abs().max())
            if largest > torch.finfo(self.store_dtype).max:
                raise ValueError(
                    f"store_dtype={self.store_dtype} cannot hold these logits: their largest magnitude is {largest:.4g}, "
                    f"above {torch.finfo(self.store_dtype).max:.6g}; use store_dtype=torch.bfloat16, torch.float32 or None"
                )
            logits = logits.to(self.store_dtype)
        # compact copies: a view of a larger tensor would keep all of its storage alive until the epoch ends
        batches.append((_compact(logits), None if target is None else _compact(target.detach().long())))
        self._kept[dataloader_idx] = self._kept.get(dataloader_idx, 0) + logits.shape[0]

    def _unpack(self, outputs: Any, batch: Any) -> tuple[Any, Any]:
        if self.extract is not None:
            got = self.extract(outputs, batch)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                what = type(got).__name__ + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
                raise ValueError(f"extract must return a pair (logits, target or None), got {what}")
            if got[1] is None:
                self._no_target_info("extract returned target None")
            return got[0], got[1]
        if isinstance(outputs, torch.Tensor):
            if outputs.ndim == 2:
                self._no_target_info("validation_step returned a tensor (taken as the logits)")
            return outputs, None
        if isinstance(outputs, dict):
            if self.logits_key not in outputs:
                raise ValueError(
                    f"validation_step returned a dict without {self.logits_key!r} (keys: {sorted(map(str, outputs))}); "
                    "set logits_key= or pass extract="
                )
            if self.target_key not in outputs:
                self._no_target_info(f"no {self.target_key!r} in the validation outputs")
            return outputs[self.logits_key], outputs.get(self.target_key)
        raise ValueError(
            f"validation_step returned {type(outputs).__name__}; return the logits, a dict with {self.logits_key!r} "
            f"(and {self.target_key!r}), or pass extract=(outputs, batch) -> (logits, target)"
        )

    def _checked(self, logits: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits and target of one batch, or a ValueError that says what is wrong with them."""
        if not isinstance(logits, torch.Tensor):
            raise ValueError(f"the logits must be a floating-point (N, K) torch.Tensor, got {type(logits).__name__}")
        if logits.ndim != 2 or not logits.is_floating_point():
            hint = " (a loss? return the logits too: {'logits': logits, 'target': y})" if logits.ndim == 0 else ""
            raise ValueError(
                f"the logits must be a floating-point (N, K) tensor, got shape {tuple(logits.shape)} and dtype {logits.dtype}{hint}"
            )
        if target is None:
            return logits, None
        if not isinstance(target, torch.Tensor):
            raise ValueError(f"the target must be a torch.Tensor of class ids (N,), got {type(target).__name__}")
        if target.ndim != 1 or target.shape[0] != logits.shape[0]:
            raise ValueError(f"the target must be class ids (N,) for the {logits.shape[0]} rows of logits, got shape {tuple(target.shape)}")
        if target.is_complex() or (target.is_floating_point() and not bool((target == target.round()).all())):
            raise ValueError(f"the target must hold integer class ids, got {target.dtype} values with fractions")
        if target.numel() and int(target.min()) < 0:
            raise ValueError(f"the target must hold class ids >= 0, got {int(target.min())}")
        return logits, target

    def _no_target_info(self, why: str) -> None:
        self._info_once("target", f"L2HMonitor: {why}: logging the tree, drift and empty_clusters; {TARGET_METRICS} "
                        f"need the targets (return {{{self.logits_key!r}: logits, {self.target_key!r}: y}} or pass extract=)")

    # ------------------------------------------------------------------------------------------- rounds
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._round(trainer, pl_module)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._round(trainer, pl_module)

    # A process without validation batches skips Lightning's validation loop, hooks included, while the others
    # meet in on_validation_epoch_end. It learns from Lightning's own schedule that a validation starts after
    # this batch, and joins that round now (nothing collective happens between here and their round).
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        val_loop = trainer.fit_loop.epoch_loop.val_loop
        if trainer.world_size > 1 and trainer.enable_validation and getattr(val_loop, "_combined_loader", 0) is None:
            # know now how many batches each process validates (Lightning loads them at the first validation
            # otherwise); every process runs this hook, so the loader's own collectives line up
            trainer.validating = True
            val_loop.setup_data()
            trainer.training = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.world_size > 1 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            schedule = self._lightning_schedule(trainer)
            if schedule is not None and sum(self._num_batches(trainer, "validate")) == 0 and schedule():
                self._batches = {}
                self._round(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._trained_epoch = trainer.current_epoch

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.validate/test: a process without batches ran no hook of the loop; join the round here
        if stage in ("validate", "test") and trainer.world_size > 1 and self._rounds == self._rounds_at_start:
            if (stage == "validate" or self.watch_test) and sum(self._num_batches(trainer, stage)) == 0:
                self._round(trainer, pl_module, log=False)

    @staticmethod
    def _num_batches(trainer: Trainer, stage: str) -> list[int | float]:
        return list((trainer.num_test_batches if stage == "test" else trainer.num_val_batches) or [0])

    @staticmethod
    def _lightning_schedule(trainer: Trainer) -> Callable[[], bool] | None:
        """Lightning's decision "validate after this train batch", or None when this version hides it."""
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        decide = getattr(loop, "_should_check_val_fx", None)
        if decide is None:
            return None
        return lambda: bool(decide(trainer.fit_loop._data_fetcher)) and not getattr(loop, "_skip_next_val", False)

    def _round(self, trainer: Trainer, pl_module: LightningModule, log: bool = True) -> None:
        """Every dataloader: each process's own points to the distributed engine, the counts to an all-reduce;
        every process gets the same tree and numbers and logs them, rank 0 writes the pictures and files."""
        self._rounds += 1
        stage = "test" if trainer.state.fn == "test" else "validate"
        n_loaders = max(len(self._num_batches(trainer, stage)), 1)
        group = _process_group(trainer)
        for idx in range(n_loaders):
            result = self._compute(trainer, idx, self._batches.pop(idx, []), pl_module.device, stage, group)
            if result is not None:
                self._publish(trainer, pl_module, idx, n_loaders, result, stage, log)
        self._batches = {}
        if group is not None:  # nobody leaves (and may exit) while rank 0 still writes
            trainer.strategy.barrier("L2HMonitor")

    def _local(self, batches: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's points as one owned tensor. Each batch is released once copied (filled from the end),
        so the peak is the joined tensor plus one batch, not twice the kept logits."""
        if len(batches) == 1:
            logits, target = batches.pop()
        else:
            dtype = functools.reduce(torch.promote_types, [b[0].dtype for b in batches])
            rows = sum(b[0].shape[0] for b in batches)
            logits = torch.empty(rows, batches[0][0].shape[1], dtype=dtype, device=batches[0][0].device)
            target = None if batches[0][1] is None else torch.empty(rows, dtype=torch.long, device=batches[0][1].device)
            while batches:
                part, part_target = batches.pop()
                rows -= part.shape[0]
                logits[rows : rows + part.shape[0]] = part
                if target is not None:
                    target[rows : rows + part.shape[0]] = part_target
                del part, part_target
        if logits.device != device and device.type != "cpu":  # the collectives run on the module's device
            logits, target = logits.to(device), None if target is None else target.to(device)
        return logits, target

    def _agree(self, batches: list, device: torch.device, group: Any) -> tuple[torch.Tensor, torch.Tensor | None, int] | None:
        """This process's points, and what all processes agree on (K, targets or not, the largest class id);
        None when no process has a point. Any process's error is raised on every process."""
        logits = target = None
        mine: tuple = (0, None, -1, None, "")  # a process without points has no say
        if batches:
            try:
                logits, target = self._local(batches, device)
                top = int(target.max()) if target is not None and target.numel() else -1
                mine = (logits.shape[1], target is not None, top, str(logits.dtype).removeprefix("torch."), "")
            except Exception as err:  # noqa: BLE001 (every process must hear it)
                mine = (0, None, -1, None, f"{type(err).__name__}: {err}")
        every = [mine]
        if group is not None:
            every = [None] * torch.distributed.get_world_size(group)
            torch.distributed.all_gather_object(every, mine, group=group)
        errors = [f"process {rank}: {e[4]}" for rank, e in enumerate(every) if e[4]]
        if errors:
            raise ValueError("L2HMonitor: " + "; ".join(errors))
        ks = [e[0] for e in every]
        if not any(ks):
            return None
        if len({k for k in ks if k}) > 1:
            raise ValueError(f"L2HMonitor: the processes disagree on the number of classes K: {ks} (process by process)")
        if len({e[1] for e in every if e[1] is not None}) > 1:
            raise ValueError("L2HMonitor: some processes have validation targets and some do not: give them on all or none")
        K, first = max(ks), next(e for e in every if e[0])
        if logits is None:  # a process without points still takes part in every collective, with (0, K)
            logits = torch.empty(0, K, dtype=getattr(torch, first[3]), device=device)
            target = torch.empty(0, dtype=torch.long, device=device) if first[1] else None
        return logits, target, max(e[2] for e in every)

    def _compute(
        self, trainer: Trainer, idx: int, batches: list, device: torch.device, stage: str, group: Any
    ) -> dict[str, Any] | None:
        """The tree and every number of one dataloader, the same on every process (None: no process has points)."""
        start = time.perf_counter()
        agreed = self._agree(batches, device, group)
        if agreed is None:
            return None
        logits, target, top = agreed
        K = logits.shape[1]
        previous = self.hierarchies.get(idx)
        truth = self.target_hierarchy
        # the same checks on the same agreed numbers: every process raises together
        if previous is not None and previous.num_leaves != K:
            raise ValueError(f"the number of classes K changed between epochs: {previous.num_leaves} before, {K} now")
        if self.class_names is not None and len(self.class_names) != K:
            raise ValueError(f"class_names has {len(self.class_names)} names but the logits have K = {K} columns")
        if truth is not None and truth.num_leaves != K:
            raise ValueError(f"target_hierarchy has {truth.num_leaves} classes but the logits have K = {K} columns")
        preds = logits.argmax(1) if logits.shape[0] else torch.zeros(0, dtype=torch.long, device=logits.device)
        counts = None
        if target is not None:
            num_classes = truth.num_leaves if truth is not None else max(top + 1, K)
            if truth is not None and top >= num_classes:
                raise ValueError(f"the target holds class id {top}, but target_hierarchy has {num_classes} classes")
            counts = _all_sum(contingency_table(preds, target, K, num_classes), group)
            per_cluster = counts.sum(1)
        else:
            per_cluster = _all_sum(torch.bincount(preds, minlength=K), group)
        num_points = int(per_cluster.sum())
        del preds, target
        metrics: dict[str, float] = {"empty_clusters": float((per_cluster == 0).sum())}
        support = None
        if self._support_due(trainer, stage):
            # clade_support reruns the engine on these logits: this epoch's tree may not overwrite them
            tree = l2h(logits, self.aggregation, process_group=group)
            began = time.perf_counter()
            support = clade_support(logits, tree, n_boot=self.support_boot, aggregation=self.aggregation,
                                    process_group=group)
            metrics["support_seconds"] = time.perf_counter() - began
            inner = support[:-1]  # the root is in every tree
            if inner.numel():
                metrics["support_mean"] = float(inner.mean())
        else:
            tree = l2h(logits, self.aggregation, inplace=True, process_group=group)
        del logits
        if previous is not None and stage == "validate":
            metrics["drift"] = float(tree_distance(previous, tree))
        if counts is not None:
            metrics.update({k: float(v) for k, v in _hierarchy_scores_compute(tree, counts, truth).items()})
        insight = self._insight(tree, counts, metrics)
        metrics["seconds"] = time.perf_counter() - start
        if group is not None:  # the slowest process's times, so that every process logs the same numbers
            times = [k for k in ("seconds", "support_seconds") if k in metrics]
            slowest = torch.tensor([metrics[k] for k in times], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(slowest, torch.distributed.ReduceOp.MAX, group=group)
            metrics.update(zip(times, slowest.tolist()))
        return {"tree": tree, "metrics": metrics, "num_points": num_points, "support": support, **insight}

    def _support_due(self, trainer: Trainer, stage: str) -> bool:
        if self.support_every_n_epochs is None:
            return False
        return trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.support_every_n_epochs == 0

    def _insight(self, tree: Hierarchy, counts: torch.Tensor | None, metrics: dict[str, float]) -> dict[str, Any]:
        """The most surprising merges (with a target hierarchy) and the suggested cuts (scalars into `metrics`).

        Each is computed on its own; one that fails is skipped with a warning (the same on every process)."""
        truth, out = self.target_hierarchy, {"surprises": None, "cuts": None}
        if self.surprises and truth is not None and tree.num_leaves > 1 and (counts is None or counts.sum() > 0):
            try:
                records = surprising_merges(tree, truth, counts=None if counts is None else counts.cpu(),
                                            names=self.class_names, group_names=self.group_names, top=self.surprises)
                out["surprises"] = [_jsonable(r) for r in records if r["surprise"] > 0]  # 0: no contradiction
            except Exception as err:  # noqa: BLE001
                self._warn_once("surprises", f"L2HMonitor: surprising merges skipped: {type(err).__name__}: {err}")
        if self.cuts and tree.evidence and tree.num_leaves > 2:
            try:
                cuts = []
                for rank, n in enumerate(suggest_cuts(tree, max_suggestions=self.cuts), start=1):
                    cut = {"groups": n, "members": _members(tree, n, self.class_names)}
                    metrics[f"cut{rank}/groups"] = float(n)
                    if counts is not None and truth is not None and truth.levels is not None and counts.sum() > 0:
                        cut["level_scores"] = _cut_scores(tree, n, counts, truth)
                        metrics.update({f"cut{rank}/{k}": v for k, v in cut["level_scores"].items()})
                    cuts.append(cut)
                out["cuts"] = cuts
            except Exception as err:  # noqa: BLE001
                self._warn_once("cuts", f"L2HMonitor: suggested cuts skipped: {type(err).__name__}: {err}")
        return out

    # ------------------------------------------------------------------------------------------- publish
    def _position(self, trainer: Trainer) -> tuple[int | None, int]:
        """(epoch, global step) of the weights being scored: the checkpoint's for validate/test from a checkpoint."""
        if trainer.state.fn == "fit":
            return trainer.current_epoch, trainer.global_step
        if self._checkpoint_position is not None and getattr(trainer, "ckpt_path", None):
            return self._checkpoint_position
        return self._trained_epoch, trainer.global_step

    @staticmethod
    def _log_step(trainer: Trainer) -> int:
        """The step Lightning files this hook's self.log values under (trainer.global_step can be one ahead)."""
        return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))

    def _publish(
        self, trainer: Trainer, pl_module: LightningModule, idx: int, n_loaders: int, result: dict, stage: str, log: bool
    ) -> None:
        tree, metrics = result["tree"], result["metrics"]
        (self.hierarchies if stage == "validate" else self.test_hierarchies)[idx] = tree
        prefix = self.prefix if stage == "validate" else f"{self.prefix}/test"
        suffix = f"/dataloader_idx_{idx}" if n_loaders > 1 else ""
        for name, value in metrics.items() if log else ():
            pl_module.log(f"{prefix}/{name}{suffix}", value, sync_dist=False, add_dataloader_idx=False)
        epoch, global_step = self._position(trainer)
        entry = {"stage": str(getattr(trainer.state.fn, "value", trainer.state.fn)), "epoch": epoch,
                 "global_step": global_step, "step": self._log_step(trainer), "dataloader_idx": idx, **metrics}
        self.history = (self.history + [entry])[-self.history_size :]
        if stage == "validate":
            self.insights[idx] = {k: result[k] for k in ("surprises", "cuts", "support")}
        if trainer.is_global_zero:
            self._write(trainer, tree, entry, result, prefix, suffix)

    def _write(self, trainer: Trainer, tree: Hierarchy, entry: dict, result: dict, prefix: str, suffix: str) -> None:
        from .views.loggers import Publication, publish, run_dir

        epoch = entry["epoch"]
        stage = "" if entry["stage"] == "fit" else f"{entry['stage']}_"
        stem = stage + (f"epoch_{epoch:04d}_" if epoch is not None else "") + f"step_{entry['global_step']:06d}"
        stem += suffix.replace("/", "_")
        out = run_dir(trainer) / prefix
        stem = _unused(out, stem)  # a second trainer.validate at the same step keeps the first one's files
        num_points, surprises, cuts = result["num_points"], result["surprises"], result["cuts"]
        support = result["support"]
        record = {**entry, "num_points": num_points, "class_names": self.class_names,
                  "group_names": self.group_names, "newick": tree.to_newick(self.class_names), "tree": tree.to_dict(),
                  "surprises": surprises, "cuts": cuts, "support": None if support is None else support.tolist()}
        pub = Publication(stem=stem, step=entry["step"], prefix=prefix, suffix=suffix, record=record,
                          text=self._text(tree, entry, num_points))
        if surprises:
            pub.tables["surprises"] = _surprise_table(surprises)
        if cuts:
            pub.tables["cuts"] = _cut_table(cuts)
        if self.log_images:
            title = self._title(entry, suffix)
            marks = dict(support=support, highlight=surprises or None)
            pub.images = self._images(tree, title, num_points, marks)
            pub.html = self._html(tree, out / f"{stem}.html", title, entry, support, surprises)
        self.last_files = dict(publish(trainer, pub))
        if not any(_known(lg) for lg in trainer.loggers):
            self._info_once("no-logger", f"L2HMonitor: no TensorBoard, W&B, MLflow or CSV logger, so the tree is only saved under {out}")

    def _title(self, entry: dict, suffix: str) -> str:
        when = (f"epoch {entry['epoch']}, " if entry["epoch"] is not None else "") + f"step {entry['global_step']}"
        stage = {"fit": "", "validate": " (validate)", "test": " (test)"}.get(entry["stage"], "")
        where = f" · dataloader {entry['dataloader_idx']}" if suffix else ""
        scores = "".join(f" · {name} {entry[key]:.3f}" for name, key in (("DP", "dp"), ("LHD", "lhd")) if key in entry)
        return f"L2H tree · {when}{stage}{where}{scores}"

    def _text(self, tree: Hierarchy, entry: dict, num_points: int) -> str:
        shown = ("dp", "lhd", "leaf_purity", "drift", "empty_clusters")
        line = ", ".join(f"{k} {entry[k]:.4g}" for k in shown if k in entry)
        return (f"{tree.num_leaves} classes, {num_points} points: {line}\n\n```\n" + tree.to_text(self.class_names)
                + "\n```\n\nNewick: `" + tree.to_newick(self.class_names) + "`")

    def _images(self, tree: Hierarchy, title: str, num_points: int, marks: dict) -> dict[str, tuple[Any, str]]:
        """The card (legible at TensorBoard's size) and the larger dendrogram (its top `MAX_LEAVES` subtrees; every
        leaf up to that many classes; the HTML page holds the whole tree)."""
        from .views import dendrogram as views

        groups = self._leaf_groups(tree.num_leaves)
        caption = f"{title}; {tree.num_leaves} classes, {num_points} points"
        kwargs = dict(names=self.class_names, groups=groups, group_names=self.group_names, title=title, **marks)
        # drawing every leaf costs ~10 s per validation at K = 1,000; the HTML page has them all
        full = views.plot_dendrogram(tree, **kwargs)[0]
        shown = "every class" if tree.num_leaves <= views.MAX_LEAVES else f"top {views.MAX_LEAVES} subtrees"
        return {"dendrogram": (views.figure_to_array(views.plot_tree_card(tree, **kwargs)[0]), caption),
                "dendrogram_full": (views.figure_to_array(full), f"{caption} ({shown})")}

    def _html(self, tree: Hierarchy, path: Path, title: str, entry: dict, support: Any, surprises: Any) -> Path:
        from .views.html import save_html

        metrics = {k.upper() if k in ("dp", "lhd") else k: entry[k]
                   for k in ("dp", "lhd", "leaf_purity", "drift", "support_mean") if k in entry}
        return save_html(tree, path, names=self.class_names, groups=self._leaf_groups(tree.num_leaves),
                         group_names=self.group_names, title=title, metrics=metrics, support=support,
                         surprises=surprises or None)

    def _leaf_groups(self, K: int) -> list[int] | None:
        """Each class's coarse ground-truth group, for colouring the leaves."""
        truth = self.target_hierarchy
        return truth.coarse_groups() if truth is not None and truth.num_leaves == K else None

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


def _check_group_names(group_names: Any, truth: Hierarchy | None) -> None:
    if isinstance(group_names, str) or not isinstance(group_names, Sequence):
        raise ValueError(f"group_names must be a sequence of names, got {type(group_names).__name__}")
    groups = truth.coarse_groups() if truth is not None else None
    if groups is None:
        raise ValueError("group_names names the coarsest groups of target_hierarchy: give a target_hierarchy with levels")
    needed = max(groups) + 1
    if len(group_names) != needed:
        raise ValueError(f"group_names has {len(group_names)} names but target_hierarchy's coarsest level has {needed} groups")


def _compact(t: torch.Tensor) -> torch.Tensor:
    """`t` itself when it owns just its own elements, else a compact copy (a slice would pin a larger storage)."""
    if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _known(logger: Any) -> bool:
    from .views.loggers import logger_kind

    return logger_kind(logger) is not None


def _unused(folder: Path, stem: str) -> str:
    candidate, n = stem, 1
    while (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{stem}_{n}"
    return candidate


def _process_group(trainer: Trainer) -> Any:
    """The group of the Trainer's processes (all of them), or None on one process."""
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.group.WORLD
    return None


def _members(tree: Hierarchy, n: int, names: Sequence[str] | None) -> list[list[str]]:
    """The classes of each group of the cut into `n` groups, groups and classes in the dendrogram's order."""
    cut = tree.cut(n).tolist()
    members: dict[int, list[str]] = {}
    for leaf in tree.leaves(tree.root):
        members.setdefault(cut[leaf], []).append(str(names[leaf]) if names is not None else str(leaf))
    return list(members.values())


def _cut_scores(tree: Hierarchy, n: int, counts: torch.Tensor, truth: Hierarchy) -> dict[str, float]:
    """NMI, ARI and ACC of the points grouped by the cut into `n` groups, against every level of the truth."""
    pred = tree.cut(n)
    c = counts.double().cpu()
    scores = {}
    for i, level in enumerate(truth.levels, start=1):
        true = torch.unique(level, return_inverse=True)[1]
        table = torch.zeros(n, int(true.max()) + 1, dtype=torch.float64)
        table.index_put_((pred[:, None].expand_as(c), true[None, :].expand_as(c)), c, accumulate=True)
        scores.update({f"level{i}/nmi": float(_nmi(table)), f"level{i}/ari": float(_ari(table)),
                       f"level{i}/acc": float(_acc(table))})
    return scores


def _surprise_table(records: list[dict]) -> tuple[list[str], list[list[Any]]]:
    columns = ["rank", "surprise", "node", "merge", "truth level", "contradiction", "strength"]
    rows = [[i, round(r["surprise"], 4), r["node"], r["label"], r["truth_level"], round(r["contradiction"], 4),
             round(r["strength"], 4)] for i, r in enumerate(records, start=1)]
    return columns, rows


def _cut_table(cuts: list[dict], shown_groups: int = 30, shown_classes: int = 8) -> tuple[list[str], list[list[Any]]]:
    """One row per group of every suggested cut (at most `shown_groups` per cut; the JSON record has them all)."""
    columns = ["rank", "groups", "scores", "group", "classes"]
    rows = []
    for rank, cut in enumerate(cuts, start=1):
        scores = ", ".join(f"{k} {v:.3f}" for k, v in cut.get("level_scores", {}).items() if k.endswith("nmi"))
        for g, group in enumerate(cut["members"][:shown_groups], start=1):
            more = f" ... (+{len(group) - shown_classes})" if len(group) > shown_classes else ""
            rows.append([rank, cut["groups"], scores if g == 1 else "", g, ", ".join(group[:shown_classes]) + more])
        if len(cut["members"]) > shown_groups:
            rows.append([rank, cut["groups"], "", "...", f"{len(cut['members']) - shown_groups} more groups"])
    return columns, rows
