"""The CLI end to end on files written into a temp dir: every format, deep trees, memory-mapped input.

Bad inputs and failing outputs: tests/test_bad_inputs_cli.py."""

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
    assert "class 0" in (out / "tree.html").read_text()
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
    assert ok.stderr == ""  # a bad input as a program: tests/test_bad_inputs_cli.py


def _chain(K):
    """The tree L2H gives when one class wins every row: each class joins the one group in turn (depth K - 1)."""
    return Hierarchy.from_merges([[0, 1]] + [[K + i - 1, i + 1] for i in range(1, K - 1)], K)


def test_one_class_wins_every_row_a_chain_through_the_real_engine(tmp_path):
    K = 1500  # deeper than Python's default recursion limit
    logits = torch.zeros(6, K)
    target = _npy(tmp_path / "t.npy", np.arange(6) % 3)
    assert main(["analyze", save(tmp_path, logits, "npy"), "--target", target, "--out", str(tmp_path / "o")]) == 0
    saved = Hierarchy.from_dict(json.loads((tmp_path / "o" / "tree.json").read_text()))
    assert saved == l2h(logits) == _chain(K)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "cuts.json", "dendrogram.png", "dendrogram_full.svg", "metrics.json", "tree.html", "tree.json", "tree.nwk"]
    assert json.loads((tmp_path / "o" / "cuts.json").read_text()) == []  # all-equal logits: no level stands out


def test_chain_of_10000_classes_every_output(tmp_path, monkeypatch, capsys):
    from l2h_lightning import analysis

    K = 10_000
    chain = _chain(K)
    monkeypatch.setattr(analysis, "l2h", lambda *args, **kwargs: chain)  # the engine's own K=10,000 chain is slow
    names = _write(tmp_path / "names.txt", "\n".join(f"c{i}" for i in range(K)))
    target = _npy(tmp_path / "t.npy", np.zeros(4, int))
    out = tmp_path / "o"
    code = main(["analyze", _npy(tmp_path / "l.npy", np.zeros((4, K), np.float32)), "--target", target,
                 "--names", names, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert Hierarchy.from_dict(json.loads((out / "tree.json").read_text())) == chain
    assert Hierarchy.from_newick((out / "tree.nwk").read_text().strip(), [f"c{i}" for i in range(K)]) == chain
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dp"] is None and metrics["leaf_purity"] == 1.0  # one class only: DP undefined, written as null
    assert matplotlib.image.imread(out / "dendrogram.png").shape[0] > 1000
    assert (out / "dendrogram_full.svg").read_text().count("c9999") >= 1
    assert "c9999" in (out / "tree.html").read_text()


def _mapped_from(tensor, path):
    """Whether `tensor`'s memory lies in a mapping of the file `path` (Linux: /proc/self/maps)."""
    address = tensor.data_ptr()
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(path):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return True
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_npy_is_memory_mapped_and_never_modified(tmp_path, monkeypatch):
    from l2h_lightning import analysis

    logits = torch.randn(300, 7)
    path = save(tmp_path, logits, "npy")
    before = (tmp_path / "logits.npy").read_bytes()
    seen = {}

    def engine(x, aggregation, **options):
        seen.update(options, mapped=_mapped_from(x, tmp_path / "logits.npy"))
        tree = l2h(x.clone(), aggregation)
        x.fill_(float("nan"))  # what an in-place engine may do to the tensor it is given
        return tree

    monkeypatch.setattr(analysis, "l2h", engine)
    target = _npy(tmp_path / "t.npy", logits.argmax(1).numpy())
    assert main(["analyze", path, "--target", target, "--out", str(tmp_path / "o")]) == 0
    assert seen["mapped"] and seen["inplace"] is True
    assert (tmp_path / "logits.npy").read_bytes() == before
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["leaf_purity"] == 1.0  # counted from the argmax taken before the engine overwrote the logits


@pytest.mark.parametrize("dtype", [">f4", "float16", "float64"])
def test_byte_orders_and_precisions(tmp_path, dtype):
    logits = torch.randn(500, 9)
    array = logits.numpy().astype(dtype)
    np.save(tmp_path / "l.npy", np.asfortranarray(array))
    assert main(["analyze", str(tmp_path / "l.npy"), "--out", str(tmp_path / "o")]) == 0
    expected = l2h(torch.from_numpy(array.astype(array.dtype.newbyteorder("="))))
    assert Hierarchy.from_dict(json.loads((tmp_path / "o" / "tree.json").read_text())) == expected


@pytest.mark.parametrize("fmt", ["pt", "npy", "npz", "csv"])
def test_shards_are_contiguous_row_blocks(tmp_path, fmt):
    from l2h_lightning.analysis import load_logits

    logits = torch.randn(11, 3, dtype=torch.float64)
    path = save(tmp_path, logits, fmt)
    parts = [load_logits(path, shard=(r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 3]
    torch.testing.assert_close(torch.cat(parts).double(), logits, rtol=0, atol=1e-12 if fmt != "csv" else 1e-15)
    assert len(load_logits(path, shard=(11, 12))) == 0


def test_group_names_in_the_legend_and_the_html(data, monkeypatch):
    from l2h_lightning.views import dendrogram

    path, logits, _ = data
    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("group_names"))
        return real(*args, **kwargs)

    real = dendrogram.save_dendrogram
    monkeypatch.setattr(dendrogram, "save_dendrogram", recording)
    (path / "groups.json").write_text(json.dumps(["animals", "vehicles"]))
    out = path / "o"
    code = main(["analyze", save(path, logits, "npy"), "--target", str(path / "target.npy"), "--names",
                 str(path / "names.txt"), "--levels", str(path / "levels.json"), "--group-names",
                 str(path / "groups.json"), "--out", str(out)])
    assert code == 0
    assert seen == [["animals", "vehicles"]]
    page = (out / "tree.html").read_text()
    assert "animals" in page and "vehicles" in page and "class 11" in page
    metrics = json.loads((out / "metrics.json").read_text())
    assert f'["DP","{metrics["dp"]:.4g}"]' in page  # the heading shows the scores


def _planted(tmp_path, n=1200, k=12, seed=0):
    """Superclasses {0,1,2}, {3,4,5}, ... whose classes confuse each other, and one spurious pair across them:
    classes 0 and 11 put their second choice on each other."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(k, (n,), generator=g)
    same = (torch.arange(k)[:, None] // 3 == torch.arange(k)[None, :] // 3).float()
    logits = 6 * torch.eye(k)[y] + 2.5 * same[y] + 0.8 * torch.randn(n, k, generator=g)
    logits[y == 0, 11] += 4.5
    logits[y == 11, 0] += 4.5
    np.save(tmp_path / "logits.npy", logits.numpy())
    np.save(tmp_path / "target.npy", y.numpy())
    (tmp_path / "levels.json").write_text(json.dumps([[i // 3 for i in range(k)], [i // 6 for i in range(k)]]))
    (tmp_path / "names.txt").write_text("\n".join(f"c{i}" for i in range(k)))
    return logits, y


def test_insight_outputs_surprises_cuts_support(tmp_path, capsys):
    from l2h_lightning.explain import clade_support, suggest_cuts, surprising_merges

    logits, y = _planted(tmp_path)
    out = tmp_path / "o"
    code = main(["analyze", str(tmp_path / "logits.npy"), "--target", str(tmp_path / "target.npy"), "--levels",
                 str(tmp_path / "levels.json"), "--names", str(tmp_path / "names.txt"), "--support", "20",
                 "--surprises", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    tree = l2h(logits)
    truth = Hierarchy.from_levels(json.loads((tmp_path / "levels.json").read_text()))
    names = [f"c{i}" for i in range(12)]
    counts = torch.zeros(12, 12, dtype=torch.long).index_put_((logits.argmax(1), y), torch.tensor(1), accumulate=True)
    expected = surprising_merges(tree, truth, logits=logits, counts=counts, names=names, top=3)
    saved = json.loads((out / "surprises.json").read_text())
    assert [r["node"] for r in saved] == [r["node"] for r in expected]
    assert saved[0]["points"] == list(expected[0]["points"])
    assert sorted(saved[0]["leaves"][0] + saved[0]["leaves"][1]) == [0, 11]  # the planted spurious pair first
    assert "most surprising merges (of 11):" in printed and f"node {saved[0]['node']}: c0 + c11" in printed.replace(
        "c11 + c0", "c0 + c11")
    cuts = json.loads((out / "cuts.json").read_text())
    assert [c["groups"] for c in cuts] == suggest_cuts(tree)
    for c in cuts:
        assert sorted(sum(c["members"], [])) == sorted(names) and len(c["members"]) == c["groups"]
        assert set(c["level_scores"]) == {f"level{i}/{m}" for i in (1, 2) for m in ("nmi", "ari", "acc")}
    assert json.loads((out / "metrics.json").read_text())["suggested_cuts"] == [c["groups"] for c in cuts]
    support = json.loads((out / "tree.json").read_text())["support"]
    torch.testing.assert_close(torch.tensor(support, dtype=torch.float64), clade_support(logits, tree, n_boot=20))
    assert "clade support:" in printed and "suggested cuts:" in printed


def test_a_cut_at_a_truth_level_scores_like_the_level_scores(tmp_path):
    from l2h_lightning.analysis import _cut

    logits, y = _planted(tmp_path, seed=1)
    tree = l2h(logits)
    truth = Hierarchy.from_levels(json.loads((tmp_path / "levels.json").read_text()))
    expected = hierarchy_scores(tree, logits, y, truth)
    counts = torch.zeros(12, 12, dtype=torch.long).index_put_((logits.argmax(1), y), torch.tensor(1), accumulate=True)
    for level, groups in ((1, 4), (2, 2)):
        scores = _cut(tree, groups, counts, truth, None)["level_scores"]
        for m in ("nmi", "ari", "acc"):
            assert scores[f"level{level}/{m}"] == pytest.approx(float(expected[f"level{level}/{m}"]))


def _torchrun(tmp_path, nproc, *args):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "l2h_lightning", "analyze", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_torchrun_two_processes_write_what_one_process_writes(tmp_path):
    _planted(tmp_path, n=1201)  # uneven blocks: 601 and 600 rows
    args = ["logits.npy", "--target", "target.npy", "--levels", "levels.json", "--names", "names.txt",
            "--support", "4"]
    assert main(["analyze", *[str(tmp_path / a) if "." in a else a for a in args], "--out", str(tmp_path / "one")]) == 0
    run = _torchrun(tmp_path, 2, *args, "--out", "two")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("1201 points, 12 classes") == 1  # only process 0 prints
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "tree.nwk").read_text() == (two / "tree.nwk").read_text()
    trees = [json.loads((d / "tree.json").read_text()) for d in (one, two)]
    assert trees[0]["children"] == trees[1]["children"]
    for key, values in trees[0]["evidence"].items():  # NaN is null in JSON
        nan = float("nan")
        expected = [nan if v is None else v for v in values]
        got = [nan if v is None else v for v in trees[1]["evidence"][key]]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12, nan_ok=True), key
    support = trees[1]["support"]  # the same bootstrap, other draws (rows are resampled per process)
    assert len(support) == 11 and support[-1] == 1.0 and all(0 <= s <= 1 for s in support)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (one, two)]
    for key, value in metrics[0].items():
        if key == "aggregation" or key == "suggested_cuts":
            assert metrics[1][key] == value
        elif key != "seconds":
            assert metrics[1][key] == pytest.approx(value, rel=1e-12), key
    surprises = [json.loads((d / "surprises.json").read_text()) for d in (one, two)]
    assert [(r["node"], r["label"]) for r in surprises[0]] == [(r["node"], r["label"]) for r in surprises[1]]
    assert "points" in surprises[0][0] and "points" not in surprises[1][0]  # row indices: one process only
    cuts = [json.loads((d / "cuts.json").read_text()) for d in (one, two)]
    assert [(c["groups"], c["members"]) for c in cuts[0]] == [(c["groups"], c["members"]) for c in cuts[1]]


def test_torchrun_an_error_on_one_process_ends_all_with_its_message(tmp_path):
    x = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    x[8, 1] = np.nan  # in the last process's block only
    np.save(tmp_path / "l.npy", x)
    run = _torchrun(tmp_path, 3, "l.npy", "--out", "o")
    assert run.returncode != 0 and run.stdout == ""
    ours = [line for line in run.stderr.splitlines() if line.startswith("l2h:")]
    assert ours == ["l2h: error: process 2: logits has NaN or infinite entries in 1 of its 3 rows"]
    assert not (tmp_path / "o" / "tree.json").exists()


def test_analyze_in_python_keeps_the_logits_for_support_and_points(tmp_path):
    from l2h_lightning.analysis import analyze

    logits, y = _planted(tmp_path)
    truth = Hierarchy.from_levels(json.loads((tmp_path / "levels.json").read_text()))
    before = logits.clone()
    result = analyze(logits, y, target_hierarchy=truth, support=3, surprises=2)
    assert torch.equal(logits, before) and not result["failures"]
    assert result["support"].shape == (11,) and len(result["surprises"]) == 2 and result["surprises"][0]["points"]


def test_a_failing_computation_is_named_and_the_files_still_written(tmp_path, monkeypatch, capsys):
    from l2h_lightning import explain

    def broken(*args, **kwargs):
        raise ValueError("no weights here")

    monkeypatch.setattr(explain, "clade_support", broken)
    _planted(tmp_path)
    out = tmp_path / "o"
    assert main(["analyze", str(tmp_path / "logits.npy"), "--support", "2", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == "l2h: error: could not compute the clade support: ValueError: no weights here"
    assert json.loads((out / "tree.json").read_text())["support"] is None and (out / "dendrogram.png").exists()
