"""Input families for the engine benchmarks: (N, K) float32 logits that look like different kinds of classifiers.

Each generator is ``fn(n, k, seed) -> torch.Tensor`` (float32, shape (n, k), CPU), registered in `FAMILIES`:

    planted           the benchmark's planted three-level hierarchy (classes in groups of 10, groups of 10 groups),
                      calibrated to about 80% top-1 accuracy and 0.8 mean confidence
    saturated         planted, but 90% of the rows as a very confident model writes them: top-1/top-2 gaps 20..300
    never_predicted   planted, with half of the classes (a random half) holding no points and never any row's argmax
    untrained_linear  an untrained ``nn.Linear(8, k)`` on standard normal inputs: most classes are never predicted
    long_tailed       planted, with Zipf-distributed true classes (class of rank r drawn with probability ~ 1/r)
    language_id       a real model: fastText's lid.176 on Django's translations (examples/language_id.py), K = 176,
                      its rows resampled to n (computed once, then cached under ~/.cache/l2h_lightning/)

    >>> from families import FAMILIES
    >>> FAMILIES["saturated"](1000, 100, 0).shape
    torch.Size([1000, 100])

No engine runs here: only inputs.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

LANGUAGE_ID_K = 176
STRETCH = 100.0  # saturated rows' logits are multiplied by up to this (log-uniformly), spans reach ~3,000


def _similarity(k: int) -> torch.Tensor:
    cls = torch.arange(k)
    sim = torch.eye(k)
    for width, level in ((10, 0.5), (100, 0.25)):
        same = (cls[:, None] // width) == (cls[None, :] // width)
        sim = torch.maximum(sim, level * same.float())
    return sim


def _planted(n: int, k: int, noise: float, scale: float, seed: int, class_probs: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, true classes): scale * (similarity of the true class to each class + Gaussian noise).

    With `class_probs` None this draws exactly what ``benchmarks/bench_engine.py``'s `planted_logits` draws.
    """
    gen = torch.Generator().manual_seed(seed)
    sim = _similarity(k)
    out = torch.empty(n, k)
    ys = []
    step = max(1, (1 << 20) // k)
    for s in range(0, n, step):  # in chunks, so that making the logits does not set the peak memory
        m = min(n, s + step) - s
        if class_probs is None:
            y = torch.randint(k, (m,), generator=gen)
        else:
            y = torch.multinomial(class_probs, m, replacement=True, generator=gen)
        out[s : s + m] = scale * (sim[y] + noise * torch.randn(m, k, generator=gen))
        ys.append(y)
    return out, torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long)


@functools.lru_cache(maxsize=None)
def calibrate(k: int, acc: float = 0.8, conf: float = 0.8) -> tuple[float, float]:
    """Noise for the target top-1 accuracy, then scale for the target mean confidence (bisection on 2,000 points)."""

    def measure(noise: float, scale: float) -> tuple[float, float]:
        logits, truth = _planted(2000, k, noise, scale, seed=123)
        c, a = logits.softmax(1).max(1)
        return float((a == truth).float().mean()), float(c.mean())

    lo, hi = 0.01, 2.0
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if measure(mid, 1.0)[0] > acc else (lo, mid)
    noise = (lo + hi) / 2
    lo, hi = 0.1, 200.0
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if measure(noise, mid)[1] < conf else (lo, mid)
    return noise, (lo + hi) / 2


def _check(n: int, k: int) -> None:
    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if int(k) < 2:
        raise ValueError(f"k must be at least 2, got {k}")


def planted(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """The planted benchmark logits (same values as ``bench_engine.planted_logits`` with `calibrate(k)`)."""
    _check(n, k)
    return _planted(n, k, *calibrate(k), seed)[0]


def saturated(n: int, k: int, seed: int = 0, fraction: float = 0.9) -> torch.Tensor:
    """Planted logits where a `fraction` of the rows are saturated: top-1 minus top-2 drawn log-uniformly in [20, 300].

    The rest of such a row is stretched too (by 1..`STRETCH`, log-uniformly, as a confident network's logits grow), so
    spans reach about 3,000; the argmax stays that of the planted row.
    """
    _check(n, k)
    out = planted(n, k, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    rows = torch.rand(n, generator=gen) < fraction
    m = int(rows.sum())
    gap = torch.exp(torch.empty(m).uniform_(np.log(20.0), np.log(300.0), generator=gen))
    stretch = torch.exp(torch.empty(m, 1).uniform_(0.0, np.log(STRETCH), generator=gen))
    block = out[rows] * stretch
    top2 = block.topk(2, 1)
    best = top2.values[:, 1] + gap  # raise the best above the second best by the gap
    block.scatter_(1, top2.indices[:, :1], best[:, None])
    out[rows] = block - best[:, None]  # the best at 0, as log-probabilities are
    return out


def never_predicted(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Planted logits over k classes of which a random half (k // 2) is never any row's argmax.

    No point belongs to those classes, and where one would still win by noise it is put below the row's best by a
    random margin (up to one noise unit); they keep their second-choice mass, so a tree must place them by it alone.
    """
    _check(n, k)
    gen = torch.Generator().manual_seed(seed + 2)
    hidden = torch.randperm(k, generator=gen)[: k // 2]
    probs = torch.ones(k, dtype=torch.float64)
    probs[hidden] = 0
    noise, scale = calibrate(k)
    out = _planted(n, k, noise, scale, seed, class_probs=probs / probs.sum())[0]
    visible = probs > 0
    ceiling = out[:, visible].max(1, keepdim=True).values
    margin = noise * scale * torch.empty(n, len(hidden)).uniform_(0.05, 1.0, generator=gen)
    out[:, hidden] = torch.minimum(out[:, hidden], ceiling - margin)
    return out


def untrained_linear(n: int, k: int, seed: int = 0, in_features: int = 8) -> torch.Tensor:
    """An untrained ``nn.Linear(in_features, k)`` (PyTorch's default initialisation) on standard normal inputs."""
    _check(n, k)
    if not 1 <= int(in_features):
        raise ValueError(f"in_features must be at least 1, got {in_features}")
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / np.sqrt(in_features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    weight = torch.empty(k, in_features).uniform_(-bound, bound, generator=gen)
    bias = torch.empty(k).uniform_(-bound, bound, generator=gen)
    out = torch.empty(n, k)
    step = max(1, (1 << 20) // k)
    for s in range(0, n, step):
        m = min(n, s + step) - s
        out[s : s + m] = torch.addmm(bias, torch.randn(m, in_features, generator=gen), weight.T)
    return out


def long_tailed(n: int, k: int, seed: int = 0, exponent: float = 1.0) -> torch.Tensor:
    """Planted logits whose true classes follow Zipf's law: the class of rank r has probability ~ r^-exponent.

    The ranks are a random permutation of the classes, so head and tail classes share the planted groups.
    """
    _check(n, k)
    gen = torch.Generator().manual_seed(seed + 3)
    rank = torch.randperm(k, generator=gen) + 1
    probs = rank.double() ** -float(exponent)
    return _planted(n, k, *calibrate(k), seed, class_probs=probs / probs.sum())[0]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "l2h_lightning"


def language_id_logits(cache: Path | None = None, max_per_locale: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The language-id example's (N, 176) logits and true label indices, computed once and cached as .npy.

    `max_per_locale` limits the sentences per Django locale (None: all of them, N = 43,912 with Django 5.2).
    """
    import django

    subset = "" if max_per_locale is None else f"_max{int(max_per_locale)}"
    path = (cache or _cache_dir()) / f"language_id_logits_django{django.__version__}{subset}.npy"
    target_path = path.with_name(path.stem + "_target.npy")
    if not (path.exists() and target_path.exists()):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
        from language_id import sentence_logits

        data = sentence_logits(max_per_locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(target_path, data["target"].numpy())
        np.save(path, data["logits"].numpy())  # written last: its presence means both are complete
    return torch.from_numpy(np.load(path)), torch.from_numpy(np.load(target_path))


def language_id(n: int, k: int = LANGUAGE_ID_K, seed: int = 0) -> torch.Tensor:
    """The real language identifier's logits, rows resampled to n: every row ⌊n/N⌋ or ⌈n/N⌉ times (seeded)."""
    _check(n, k)
    if int(k) != LANGUAGE_ID_K:
        raise ValueError(f"k must be {LANGUAGE_ID_K} for the language-id logits (the model's labels), got {k}")
    logits, _ = language_id_logits()
    gen = torch.Generator().manual_seed(seed)
    reps = -(-n // logits.shape[0])
    rows = torch.cat([torch.randperm(logits.shape[0], generator=gen) for _ in range(reps)])[:n]
    return logits[rows].contiguous()


FAMILIES: dict[str, Callable[..., torch.Tensor]] = {
    "planted": planted,
    "saturated": saturated,
    "never_predicted": never_predicted,
    "untrained_linear": untrained_linear,
    "long_tailed": long_tailed,
    "language_id": language_id,
}
