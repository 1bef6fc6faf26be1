"""Every bad input to L2HMonitor is refused with a ValueError that names it (one row per case)."""

import pytest
import torch
from lightning.pytorch import Trainer

from l2h_lightning import Hierarchy, L2HMonitor
from lightning_helpers import SUPER, Classifier, trainer_kwargs

TRUTH = Hierarchy.from_levels([SUPER])

# (case, L2HMonitor arguments, exception, phrase of the message)
ARGUMENTS = [
    ("every_n_epochs 0", {"every_n_epochs": 0}, ValueError, "every_n_epochs must be a positive int"),
    ("every_n_epochs bool", {"every_n_epochs": True}, ValueError, "every_n_epochs must be a positive int"),
    ("unknown aggregation", {"aggregation": "mean"}, ValueError, "aggregation must be one of"),
    ("max_samples negative", {"max_samples": -1}, ValueError, "max_samples must be a positive int"),
    ("max_samples fraction", {"max_samples": 2.5}, ValueError, "max_samples must be a positive int"),
    ("store_dtype integer", {"store_dtype": torch.long}, ValueError, "store_dtype must be a floating-point torch.dtype"),
    ("store_dtype string", {"store_dtype": "float16"}, ValueError, "store_dtype must be a floating-point torch.dtype"),
    ("extract not callable", {"extract": "logits"}, ValueError, "extract must be callable"),
    ("target_hierarchy a list", {"target_hierarchy": [0, 1]}, ValueError, "target_hierarchy must be a Hierarchy"),
    ("class_names a string", {"class_names": "abc"}, ValueError, "class_names must be a sequence of names"),
    ("class_names vs target_hierarchy", {"class_names": ["a"], "target_hierarchy": TRUTH}, ValueError, "class_names has 1 names but target_hierarchy has 6"),
    ("group_names without hierarchy", {"group_names": ["a", "b"]}, ValueError, "group_names names the coarsest groups of target_hierarchy"),
    ("group_names wrong length", {"group_names": ["a", "b", "c"], "target_hierarchy": TRUTH}, ValueError, "group_names has 3 names but target_hierarchy's coarsest level has 2 groups"),
    ("group_names a string", {"group_names": "ab", "target_hierarchy": TRUTH}, ValueError, "group_names must be a sequence of names"),
    ("history 0", {"history": 0}, ValueError, "history must be a positive int"),
    ("empty prefix", {"prefix": ""}, ValueError, "prefix must be a non-empty string"),
    ("surprises negative", {"surprises": -1}, ValueError, "surprises must be a non-negative int"),
    ("cuts a float", {"cuts": 2.0}, ValueError, "cuts must be a non-negative int"),
    ("support every 0 epochs", {"support_every_n_epochs": 0}, ValueError, "support_every_n_epochs must be a positive int or None"),
    ("support_boot 0", {"support_boot": 0}, ValueError, "support_boot must be a positive int"),
]


@pytest.mark.parametrize(("case", "kwargs", "error", "phrase"), ARGUMENTS, ids=[row[0] for row in ARGUMENTS])
def test_bad_arguments(case, kwargs, error, phrase):
    with pytest.raises(error, match=phrase):
        L2HMonitor(**kwargs)


def first(o, b):
    return o["logits"], b[1]


# (case, L2HMonitor arguments, what validation_step returns, sanity-check batches, exception, phrase of the message)
RUNS = [
    ("logits 3-D", {"extract": lambda o, b: (o["logits"][:, :, None], None)}, "dict", 2, ValueError, r"floating-point \(N, K\) tensor, got shape \(64, 6, 1\)"),
    ("integer logits", {"extract": lambda o, b: (o["logits"].long(), None)}, "dict", 2, ValueError, "floating-point .* dtype torch.int64"),
    ("logits a list", {"extract": lambda o, b: (o["logits"].tolist(), None)}, "dict", 2, ValueError, "logits must be a floating-point .* torch.Tensor, got list"),
    ("loss only", {}, "loss", 2, ValueError, r"got shape \(\) .*a loss\?"),
    ("returns None", {}, "none", 2, ValueError, "validation_step returned NoneType"),
    ("returns a list", {}, "list", 2, ValueError, "validation_step returned list"),
    ("missing logits key", {"logits_key": "scores"}, "dict", 2, ValueError, r"without 'scores' \(keys: \['logits', 'target'\]\)"),
    ("extract returns one tensor", {"extract": lambda o, b: o["logits"]}, "dict", 2, ValueError, "extract must return a pair .* got Tensor"),
    ("extract returns three", {"extract": lambda o, b: (o["logits"], b[1], 0)}, "dict", 2, ValueError, "extract must return a pair .* got tuple of length 3"),
    ("target wrong length", {"extract": lambda o, b: (o["logits"], b[1][:3])}, "dict", 2, ValueError, r"target must be class ids \(N,\) for the 64 rows"),
    ("target a list", {"extract": lambda o, b: (o["logits"], b[1].tolist())}, "dict", 2, ValueError, "target must be a torch.Tensor of class ids"),
    ("float target with fractions", {"extract": lambda o, b: (o["logits"], b[1] + 0.7)}, "dict", 2, ValueError, "target must hold integer class ids, got torch.float32 values with fractions"),
    ("negative target", {"extract": lambda o, b: (o["logits"], b[1] - 1)}, "dict", 2, ValueError, "target must hold class ids >= 0, got -1"),
    ("target only in some batches", {"extract": lambda o, b: (o["logits"], b[1] if len(b[1]) == 64 else None)}, "dict", 0, ValueError, "some validation batches came with a target and some without"),
    ("float16 store overflow", {"store_dtype": torch.float16, "extract": lambda o, b: (o["logits"] * 1e5, b[1])}, "dict", 0, ValueError, "store_dtype=torch.float16 cannot hold these logits: their largest magnitude is"),
    ("target beyond the hierarchy", {"target_hierarchy": TRUTH, "extract": lambda o, b: (o["logits"], b[1] + 1)}, "dict", 0, ValueError, "target holds class id 6, but target_hierarchy has 6 classes"),
    ("class_names vs K", {"class_names": ["a", "b", "c"]}, "dict", 0, ValueError, "class_names has 3 names but the logits have K = 6 columns"),
    ("target_hierarchy vs K", {"target_hierarchy": Hierarchy.from_levels([[0, 0, 1, 1]])}, "dict", 0, ValueError, "target_hierarchy has 4 classes but the logits have K = 6"),
]


@pytest.mark.parametrize(("case", "kwargs", "output", "sanity", "error", "phrase"), RUNS, ids=[row[0] for row in RUNS])
def test_bad_validation_outputs(tmp_path, case, kwargs, output, sanity, error, phrase):
    trainer = Trainer(callbacks=[L2HMonitor(**kwargs)], logger=False,
                      **trainer_kwargs(tmp_path, max_epochs=1, limit_train_batches=1, num_sanity_val_steps=sanity))
    with pytest.raises(error, match=phrase):
        trainer.fit(Classifier(output=output))
    if sanity:  # refused at the sanity check, before any training step
        assert trainer.global_step == 0
