"""The engine against the slow reference of docs/algorithm.md (tests/reference.py)."""

import math

import numpy as np
import pytest
import torch

from l2h_lightning import AGGREGATIONS, Hierarchy, l2h
from l2h_lightning.engine import l2h_replicates
from reference import reference_l2h

TIE_FREE = 1e-6  # decisions closer than this (relative) are near-ties that float rounding may break either way


def random_logits(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Random logits of a few kinds: plain noise, a planted hierarchy, and never-predicted clusters."""
    kind = rng.integers(3)
    x = rng.normal(size=(n, k)) * rng.uniform(0.5, 6)
    if kind == 1:  # planted: classes in super-groups, points near their class
        y = rng.integers(k, size=n)
        sup = rng.integers(max(1, k // 4), size=k)
        x += 4 * np.eye(k)[y] + 2 * (sup[y][:, None] == sup[None, :])
    if kind == 2:  # some clusters are never anyone's argmax
        x[:, rng.random(k) < 0.3] -= 50
    return x


def assert_matches_reference(logits: np.ndarray, aggregation: str, dtype=torch.float64) -> bool:
    """Check engine == reference; returns False (checking nothing) for a near-tie input."""
    expected, margins = reference_l2h(torch.as_tensor(logits, dtype=dtype).double().numpy(), aggregation)
    if min(margins, default=math.inf) < TIE_FREE:
        return False
    got = l2h(torch.as_tensor(logits, dtype=dtype), aggregation)
    assert [tuple(m) for m in got.merges.tolist()] == expected
    return True


@pytest.mark.parametrize("aggregation", ["cluster_mean", "sum", "group_mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_merges_as_reference(aggregation, dtype):
    rng = np.random.default_rng(hash((aggregation, str(dtype))) % 2**32)
    checked = 0
    cases = [(int(k), int(rng.integers(k, 8 * k + 20))) for k in rng.integers(2, 65, size=25)]
    cases += [(8, 3000), (64, 4000), (2, 2), (5, 5)]
    for k, n in cases:
        checked += assert_matches_reference(random_logits(rng, n, k), aggregation, dtype)
    assert checked >= 0.8 * len(cases)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_pairs_same_merges_as_reference(dtype):
    rng = np.random.default_rng(7)
    cases = [(int(k), int(rng.integers(k, 10 * k))) for k in rng.integers(2, 17, size=12)] + [(24, 400)]
    checked = sum(assert_matches_reference(random_logits(rng, n, k), "all_pairs", dtype) for k, n in cases)
    assert checked >= 0.8 * len(cases)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_fewer_points_than_clusters_and_empty_clusters(aggregation):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 12)) * 3
    assert assert_matches_reference(logits, aggregation)
    tree = l2h(torch.as_tensor(logits), aggregation)
    assert tree.is_binary and tree.num_leaves == 12


def test_never_predicted_cluster_joins_where_points_put_their_second_choice():
    # cluster 2 is never an argmax, but the points of cluster 0 put their second choice on it
    logits = torch.tensor([[5.0, 0.0, 4.0], [5.0, 0.0, 4.0], [0.0, 5.0, 1.0]])
    merges = l2h(logits).merges.tolist()
    assert merges[0] in ([0, 2], [1, 2]) and [0, 2] in merges


def test_large_logit_ranges_use_the_log_domain():
    # rows spanning hundreds of logits: exp(l - max) underflows, the engine must still be exact
    rng = np.random.default_rng(11)
    checked = 0
    for scale in (30.0, 60.0):  # these seeds give tie-free inputs (margins > 1e-6), so all are checked
        for k, n in [(6, 50), (20, 300)]:
            checked += assert_matches_reference(rng.normal(size=(n, k)) * scale, "cluster_mean", torch.float32)
            checked += assert_matches_reference(rng.normal(size=(n, k)) * scale, "all_pairs", torch.float64)
    assert checked == 8


def test_all_equal_logits_follow_the_tie_rules():
    # every point picks cluster 0; each reassignment then lands on the first remaining cluster
    K = 6
    logits = torch.zeros(10, K)
    expected = [(0, 1)] + [(K + i, i + 2) for i in range(K - 2)]
    assert [tuple(m) for m in l2h(logits).merges.tolist()] == expected
    assert reference_l2h(logits.numpy())[0] == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast(dtype):
    rng = np.random.default_rng(5)
    logits = torch.as_tensor(random_logits(rng, 300, 16)).to(dtype)
    assert l2h(logits) == l2h(logits.float())
    assert [tuple(m) for m in l2h(logits).merges.tolist()] == reference_l2h(logits.double().numpy())[0]


def test_float64_beyond_the_float32_range():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(200, 6)) * 3
    logits[:50, 0] += 1e39  # finite in float64, infinite in float32: these rows go to the log domain
    assert assert_matches_reference(logits, "cluster_mean")


def test_one_cluster_gives_a_tree_without_merges():
    tree = l2h(torch.randn(5, 1))
    assert tree.num_leaves == 1 and tree.merges.shape == (0, 2) and tree.to_linkage().shape == (0, 4)


def test_accepts_numpy_and_leaves_the_input_alone():
    logits = np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32)
    before = logits.copy()
    assert isinstance(l2h(logits), Hierarchy)
    np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (torch.randn(5), "2-D"),
        (torch.randn(2, 3, 4), "2-D"),
        (torch.zeros(0, 3), "N = 0"),
        (torch.zeros(3, 0), "K = 0"),
        (torch.ones(3, 3, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_input_is_rejected(logits, message):
    with pytest.raises(ValueError, match=message):
        l2h(logits)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rows_are_counted(bad):
    logits = torch.randn(10, 4)
    logits[2, 1] = bad
    logits[7, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite entries in 2 of its 10 rows"):
        l2h(logits)


def test_trees_are_ordinary_tensors_although_the_engine_runs_in_inference_mode():
    """Inference tensors cannot be changed outside inference mode: nothing made inside the engine may be returned."""
    logits = torch.randn(200, 6, generator=torch.Generator().manual_seed(1))
    for tree in (l2h(logits), l2h(logits, "all_pairs"), next(l2h_replicates(logits, [torch.ones(200)]))):
        assert not tree.merges.is_inference()
        assert not any(value.is_inference() for value in tree.evidence.values())
        tree.evidence["mass"] += 0.0  # (an inference tensor would raise here)
    assert not torch.is_inference_mode_enabled()  # (and the mode is left)


def test_unknown_aggregation():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        l2h(torch.randn(4, 3), aggregation="median")


def test_the_pass_shared_by_threads_gives_the_same_tree_under_inference_mode():
    """17,000 x 1,000 is large enough for two threads to share the pass over the logits (the check and the first
    pass); in Lightning's validation that runs under torch.inference_mode, which threads do not inherit."""
    threads = torch.get_num_threads()
    logits = torch.randn(17_000, 1_000, generator=torch.Generator().manual_seed(0)) * 3
    try:
        torch.set_num_threads(1)
        expected = l2h(logits)
        torch.set_num_threads(2)
        with torch.inference_mode():
            inference_logits = logits.clone()  # an inference tensor, as a validation step's outputs are
            assert l2h(inference_logits, inplace=True) == expected
        logits[[5, 9_000, 16_999], [1, 500, 999]] = math.nan
        with pytest.raises(ValueError, match="NaN or infinite entries in 3 of its 17000 rows"):
            l2h(logits)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_same_tree():
    logits = torch.as_tensor(random_logits(np.random.default_rng(2), 2000, 50), dtype=torch.float32)
    for aggregation in AGGREGATIONS:
        assert l2h(logits.cuda(), aggregation) == l2h(logits, aggregation)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_replicates_share_one_pass_and_equal_weighted_runs(aggregation):
    rng = np.random.default_rng(21)
    for kind in range(3):
        logits = torch.as_tensor(random_logits(rng, 600, 24), dtype=torch.float32)
        logits[: 100 * kind, 0] += 60.0  # saturated rows, which the log domain serves
        logits[:, 5] -= 30.0  # never predicted: joins by the update path
        logits[:, 7] -= 30.0
        logits[599, 7] += 60.0  # a cluster of one point, of weight 0 in some replicates
        # never predicted but close behind every row's best: absorbing it moves mass, so reused answers must be
        # the group's own, not ones an earlier replicate went on to update
        logits[:, 9] = logits.max(1).values - 0.5 - torch.rand(600, generator=torch.Generator().manual_seed(kind))
        gen = torch.Generator().manual_seed(kind)
        # enough replicates that later ones reuse earlier groups' answers
        weights = [None] + [torch.multinomial(torch.ones(600), 600, replacement=True, generator=gen).bincount(minlength=600)
                            for _ in range(8)]
        assert any(int(w[599]) == 0 for w in weights[1:])
        for got, w in zip(l2h_replicates(logits, weights, aggregation), weights):
            expected = l2h(logits, aggregation, weights=w)
            assert got.merges.tolist() == expected.merges.tolist()
            for key, value in expected.evidence.items():
                torch.testing.assert_close(got.evidence[key], value, equal_nan=True)


def test_weights_all_zero_are_refused():
    with pytest.raises(ValueError, match="weights are all 0"):
        l2h(torch.randn(5, 3), weights=torch.zeros(5))
