"""Every bad input of `l2h analyze` is refused with exit code 2 and one line naming the option, the file and the
problem; an output that cannot be written costs only itself (exit code 1, the others are written)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from l2h_lightning.cli import main

K, N = 12, 400


def _write(path, text):
    path.write_text(text)
    return str(path)


def _bytes(path, data):
    path.write_bytes(data)
    return str(path)


def _npy(path, array):
    np.save(path, array)
    return str(path)


def _pt(path, obj):
    torch.save(obj, path)
    return str(path)


def _dir(path):
    path.mkdir()
    return str(path)


def _logits(p):
    return _npy(p / "l.npy", np.random.default_rng(0).normal(size=(N, K)).astype(np.float32))


def _levels(p):
    return _write(p / "levels.json", json.dumps([[i // 3 for i in range(K)], [i // 6 for i in range(K)]]))


CASES = [
    # the logits file
    (lambda p: [str(p / "missing.npy")], r"--logits .*missing\.npy: no such file"),
    (lambda p: [_dir(p / "logits.npy")], r"--logits .*logits\.npy: is a directory"),
    (lambda p: [_write(p / "names.txt", "a\n")], r"unsupported format \.txt"),
    (lambda p: [_write(p / "bad.csv", "1,2,x\n3,4,5\n")], r"bad\.csv: has non-numeric content"),
    (lambda p: [_pt(p / "d.pt", {"scores": torch.zeros(2, 2)})], r"without 'logits' \(keys: \['scores'\]\)"),
    (lambda p: [_pt(p / "d.pt", [1, 2])], r"holds a list, not a tensor"),
    (lambda p: [_npy(p / "flat.npy", np.zeros(5))], r"2-D \(N, K\) table, got shape \(5,\)"),
    (lambda p: [_npy(p / "text.npy", np.array([["a", "b"]]))], "non-numeric content"),
    (lambda p: [_npy(p / "obj.npy", np.array([[{}, 1]], dtype=object))], r"cannot read it as \.npy"),
    (lambda p: [_write(p / "broken.npz", "not a zip")], r"cannot read it as \.npz"),
    (lambda p: [_npy(p / "int.npy", np.ones((N, K), np.int64))], r"--logits .*int\.npy: logits must be floating point.*int64"),
    (lambda p: [_npy(p / "b.npy", np.ones((N, K), bool))], r"logits must be floating point.*bool"),
    (lambda p: [_npy(p / "c.npy", np.ones((N, K), np.complex64))], r"logits must be floating point.*complex64"),
    (lambda p: [_pt(p / "i.pt", torch.ones(N, K, dtype=torch.int32))], r"i\.pt: logits must be floating point.*int32"),
    (lambda p: [_write(p / "i.csv", "1,2\n3,4\n")], None),  # CSV is read as float64: accepted
    (lambda p: [_npy(p / "l.npy", np.full((N, K), np.nan))], r"NaN or infinite"),
    (lambda p: [_npy(p / "l.npy", np.zeros((0, K), np.float32))], r"no rows"),
    (lambda p: [_npy(p / "l.npy", np.zeros((N, 0), np.float32))], r"no columns"),
    # targets
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.zeros(3, int))], r"--target .*has 3 labels but the logits have N = 400"),
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.full(N, 0.5))], "whole class ids"),
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.zeros((N, 1), int))], r"1-D array of N class ids, got shape \(400, 1\)"),
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.zeros((20, 20), int))], r"1-D array.*\(20, 20\)"),
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.full(N, -1))], r"class ids >= 0, found -1"),
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.full(N, 1 + 1j))], r"whole class ids.*complex"),
    (lambda p: [_logits(p), "--target", _npy(p / "t.npy", np.full(N, K)), "--levels", _levels(p)], r"class id 12, but --levels covers 12"),
    (lambda p: [_logits(p), "--target", _dir(p / "t")], r"--target .*: is a directory"),
    # names
    (lambda p: [_logits(p), "--names", _write(p / "n.txt", "a\nb\n")], r"--names .*n\.txt: has 2 names but the logits have K = 12"),
    (lambda p: [_logits(p), "--names", _write(p / "n.json", '["a", "b",')], r"--names .*n\.json: not valid JSON .*line 1"),
    (lambda p: [_logits(p), "--names", _write(p / "n.json", '{"a": 1}')], r"n\.json: expected a JSON list of names, got a JSON dict"),
    (lambda p: [_logits(p), "--names", _write(p / "n.json", '["a", ["b"]]')], r"n\.json: entry 1 is \[\"b\"\], not a name"),
    (lambda p: [_logits(p), "--names", _bytes(p / "n.txt", b"\xff\xfe\x00a")], r"n\.txt: not UTF-8 text"),
    (lambda p: [_logits(p), "--names", _dir(p / "names")], r"--names .*names: is a directory"),
    # levels and group names
    (lambda p: [_logits(p), "--levels", _write(p / "v.json", "[[0, 1]]")], r"--levels .*levels cover 2 classes"),
    (lambda p: [_logits(p), "--levels", _write(p / "v.json", json.dumps([[0.5] * K]))], r"level map 0, entry 0 is 0.5, not a whole group id"),
    (lambda p: [_logits(p), "--levels", _write(p / "v.json", json.dumps([[True] * K]))], r"entry 0 is true, not a whole group id"),
    (lambda p: [_logits(p), "--levels", _write(p / "v.csv", "\n".join(["0.5"] * K))], r"v\.csv: group ids must be whole numbers"),
    (lambda p: [_logits(p), "--levels", _write(p / "v.json", "[[0, 1")], r"--levels .*v\.json: not valid JSON"),
    (lambda p: [_logits(p), "--levels", _write(p / "v.json", "[0, 1]")], r"v\.json: expected a JSON list of level maps"),
    (lambda p: [_logits(p), "--group-names", _write(p / "g.txt", "x\ny\n")], r"--group-names needs --levels"),
    (lambda p: [_logits(p), "--levels", _levels(p), "--group-names", _write(p / "g.txt", "x\ny\nz\n")],
     r"--group-names .*g\.txt: has 3 names, but the coarsest --levels level has group ids 0\.\.1 \(2 names needed\)"),
    (lambda p: [_logits(p), "--levels", _levels(p), "--group-names", _write(p / "g.json", "[")], r"--group-names .*g\.json: not valid JSON"),
    # options and the output folder
    (lambda p: [_logits(p), "--out", _write(p / "file", "x")], r"--out .*file: exists and is not a directory"),
    (lambda p: [_logits(p), "--out", str(p / _write(p / "file", "x") / "sub")], r"--out .*sub: cannot write there \(Not a directory\)"),
    (lambda p: [_logits(p), "--device", "tpu"], r"--device must be cpu or cuda"),
]


@pytest.mark.parametrize(("make", "message"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_exits_2_with_one_line(tmp_path, make, message, capsys):
    argv = ["analyze", *make(tmp_path)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code = main(argv)
    err = capsys.readouterr().err
    if message is None:
        assert code == 0, err
        return
    assert code == 2, err
    assert err.startswith("l2h: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "tree.json").exists()


def test_usage_errors_are_exit_code_2(tmp_path, capsys):
    assert main(["analyze", _logits(tmp_path), "--aggregation", "median"]) == 2
    assert "invalid choice: 'median'" in capsys.readouterr().err
    assert main(["analyze"]) == 2
    assert main(["analyze", _logits(tmp_path), "--support", "2.5"]) == 2
    assert "--support: expected a whole number >= 0, got '2.5'" in capsys.readouterr().err
    assert main(["analyze", _logits(tmp_path), "--surprises", "-1"]) == 2
    assert "--surprises: expected a whole number >= 0, got '-1'" in capsys.readouterr().err


def test_a_failing_output_costs_only_itself(tmp_path, capsys, monkeypatch):
    from l2h_lightning.views import dendrogram

    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(dendrogram, "save_dendrogram", broken)
    target = _npy(tmp_path / "t.npy", np.arange(N) % K)
    out = tmp_path / "out"
    assert main(["analyze", _logits(tmp_path), "--target", target, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [f"l2h: error: could not write {out / 'dendrogram.png'}: RecursionError: maximum recursion depth exceeded"]
    assert sorted(p.name for p in out.iterdir()) == ["cuts.json", "metrics.json", "tree.html", "tree.json", "tree.nwk"]  # no partial file
    assert "points, 12 classes" in captured.out


def test_an_internal_error_is_one_line_unless_traceback(tmp_path, capsys, monkeypatch):
    from l2h_lightning import analysis

    def broken(*args, **kwargs):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(analysis, "l2h", broken)
    assert main(["analyze", _logits(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "l2h: error: internal error (RuntimeError: out of cheese); rerun with --traceback to see where"
    with pytest.raises(RuntimeError, match="out of cheese"):
        main(["analyze", _logits(tmp_path), "--out", str(tmp_path / "o"), "--traceback"])


def test_as_a_program_no_traceback(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "l2h_lightning", "analyze", _npy(tmp_path / "i.npy", np.ones((4, 3), int)),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [f"l2h: error: --logits {tmp_path / 'i.npy'}: logits must be floating "
                                                "point (float16, float32 or float64), got torch.int64"]
