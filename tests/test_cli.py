"""The CLI end to end on files written into a temp dir: every format, every error case, exit codes."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch

from l2h_lightning import Hierarchy, l2h
from l2h_lightning.cli import main
from l2h_lightning.metrics.functional import hierarchy_scores

K, N = 12, 400


@pytest.fixture
def data(tmp_path):
    g = torch.Generator().manual_seed(0)
    target = torch.randint(K, (N,), generator=g)
    logits = torch.randn(N, K, generator=g) + 3 * torch.nn.functional.one_hot(target, K)
    np.save(tmp_path / "target.npy", target.numpy())
    (tmp_path / "names.txt").write_text("\n".join(f"class {i}" for i in range(K)) + "\n")
    (tmp_path / "levels.json").write_text(json.dumps([[i // 3 for i in range(K)], [i // 6 for i in range(K)]]))
    return tmp_path, logits, target


def save(path, logits, fmt):
    file = path / f"logits.{fmt}"
    if fmt == "pt":
        torch.save({"logits": logits}, file)
    elif fmt == "npy":
        np.save(file, logits.numpy())
    elif fmt == "npz":
        np.savez(file, logits=logits.numpy(), other=np.zeros(3))
    else:
        np.savetxt(file, logits.numpy(), delimiter=",")
    return str(file)


@pytest.mark.parametrize("fmt", ["pt", "npy", "npz", "csv"])
def test_every_format_end_to_end(data, fmt, capsys):
    path, logits, target = data
    out = path / f"out_{fmt}"
    code = main(["analyze", save(path, logits, fmt), "--target", str(path / "target.npy"), "--names",
                 str(path / "names.txt"), "--levels", str(path / "levels.json"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"{N} points, {K} classes" in printed and "dp" in printed and "class 0" in printed
    tree = l2h(logits.double() if fmt == "csv" else logits)
    saved = json.loads((out / "tree.json").read_text())
    assert Hierarchy.from_dict(saved) == tree and saved["names"][0] == "class 0"
    assert Hierarchy.from_newick((out / "tree.nwk").read_text().strip(), saved["names"]) == tree
    metrics = json.loads((out / "metrics.json").read_text())
    truth = Hierarchy.from_levels(json.loads((path / "levels.json").read_text()))
    expected = hierarchy_scores(tree, logits, target, truth)
    assert metrics["dp"] == pytest.approx(float(expected["dp"]))
    assert metrics["level2/ari"] == pytest.approx(float(expected["level2/ari"]))
    image = matplotlib.image.imread(out / "dendrogram.png")
    assert image.shape[:2] == (500, 600)  # 6 x 5 inches at 100 dpi for 12 leaves


def test_without_targets_no_metrics_file(data, capsys):
    path, logits, _ = data
    assert main(["analyze", save(path, logits, "npy"), "--out", str(path / "o")]) == 0
    assert not (path / "o" / "metrics.json").exists() and (path / "o" / "dendrogram.png").exists()


def test_large_k_writes_a_truncated_png_and_a_full_svg(tmp_path):
    logits = torch.randn(2000, 200)
    assert main(["analyze", save(tmp_path, logits, "npy"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "dendrogram_full.svg").stat().st_size > 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: ["analyze", str(p / "missing.npy")], "no such file"),
        (lambda p: ["analyze", _write(p / "names.txt", "a\n")], "unsupported format .txt"),
        (lambda p: ["analyze", _write(p / "bad.csv", "1,2,x\n3,4,5\n")], "bad.csv: has non-numeric content"),
        (lambda p: ["analyze", _pt(p / "d.pt", {"scores": torch.zeros(2, 2)})], r"without 'logits' \(keys: \['scores'\]\)"),
        (lambda p: ["analyze", _npy(p / "flat.npy", np.zeros(5))], r"2-D \(N, K\) table, got shape \(5,\)"),
        (lambda p: ["analyze", _npy(p / "text.npy", np.array([["a", "b"]]))], "non-numeric content"),
        (lambda p: ["analyze", _write(p / "broken.npz", "not a zip")], "cannot read it as .npz"),
        (lambda p: ["analyze", _npy(p / "l.npy", np.zeros((N, K))), "--names", _write(p / "n.txt", "a\nb\n")],
         "names has 2 entries but the logits have K = 12"),
        (lambda p: ["analyze", _npy(p / "l.npy", np.zeros((N, K))), "--target", _npy(p / "t.npy", np.zeros(3, int))],
         "target has 3 labels but the logits have N = 400"),
        (lambda p: ["analyze", _npy(p / "l.npy", np.zeros((N, K))), "--target", _npy(p / "t.npy", np.full(N, 0.5))],
         "whole class ids"),
        (lambda p: ["analyze", _npy(p / "l.npy", np.full((N, K), np.nan))], "NaN or infinite entries in 400"),
        (lambda p: ["analyze", _npy(p / "l.npy", np.zeros((N, K))), "--levels", _write(p / "v.json", "[[0, 1]]")],
         "levels cover 2 classes"),
        (lambda p: ["analyze", _npy(p / "l.npy", np.zeros((N, K))), "--device", "tpu"], "--device must be cpu or cuda"),
    ],
)
def test_errors_exit_2_with_a_message(tmp_path, make, message, capsys):
    assert main(make(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("l2h: error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err


def _write(path, text):
    path.write_text(text)
    return str(path)


def _pt(path, obj):
    torch.save(obj, path)
    return str(path)


def _npy(path, array):
    np.save(path, array)
    return str(path)


def test_module_and_console_script_run_as_programs(data):
    path, logits, _ = data
    ok = subprocess.run([sys.executable, "-m", "l2h_lightning", "analyze", save(path, logits, "npy"), "--out",
                         str(path / "o")], capture_output=True, text=True)
    assert ok.returncode == 0 and "top 4 groups" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "l2h_lightning", "analyze", str(path / "none.pt")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no such file" in bad.stderr
