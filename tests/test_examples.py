"""The examples run as their docstrings say (in their quick modes)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

import cifar100  # noqa: E402
import demo  # noqa: E402
import digits  # noqa: E402
import offline_logits  # noqa: E402

# CIFAR-100's published coarse label of each fine class id (0 = apple, ..., 99 = worm), written out independently
COARSE = [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11,
          1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17, 10, 3,
          2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2,
          15, 6, 0, 17, 8, 14, 13]


def test_demo_trains_with_the_monitor(tmp_path, capsys):
    saved = demo.main(["--epochs", "2", "--out", str(tmp_path)])
    assert 0 <= saved["dp"] <= 1 and 0 <= saved["lhd"] <= 1 and saved["epoch"] == 1
    printed = capsys.readouterr().out
    assert "last dendrogram:" in printed and "tensorboard --logdir" in printed
    assert Path(printed.split("last dendrogram: ")[1].split()[0]).exists()


def test_digits_quick_mode(tmp_path, capsys):
    monitor = digits.main(["--epochs", "1", "--out", str(tmp_path)])
    assert monitor.hierarchy.num_leaves == 10
    assert "4 groups:" in capsys.readouterr().out


def test_offline_logits(tmp_path):
    scores = offline_logits.main(["--out", str(tmp_path)])
    assert {"dp", "leaf purity", "level1/acc"} <= set(scores)
    assert (tmp_path / "dendrogram.svg").exists()


def test_cifar100_taxonomy_and_arguments(capsys):
    truth = cifar100.taxonomy()
    assert len(cifar100.FINE_NAMES) == 100 and len(set(cifar100.FINE_NAMES)) == 100
    assert truth.levels[0].tolist() == COARSE
    assert truth.num_leaves == 100 and len(truth.children) == 21  # 20 superclasses and the root
    with pytest.raises(ValueError, match="without a superclass"):
        cifar100.taxonomy(["apple", "spaceship"])
    args = cifar100.parse(["--epochs", "3", "--data", "/tmp/x"])
    assert args.epochs == 3 and args.data == Path("/tmp/x") and not args.taxonomy
    with pytest.raises(SystemExit):
        cifar100.parse(["--epochs", "0"])
    cifar100.main(["--taxonomy"])
    assert "19 vehicles_2: lawn_mower, rocket, streetcar, tank, tractor" in capsys.readouterr().out
