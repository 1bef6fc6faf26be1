"""Metrics against brute force over point pairs (tests/reference.py), scikit-learn and scipy."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from l2h_lightning import Hierarchy, l2h
from l2h_lightning.metrics import DendrogramPurity, HierarchyMetrics, LCAHeightDistance, LeafPurity
from l2h_lightning.metrics.functional import (
    contingency_table,
    dendrogram_purity,
    hierarchy_scores,
    lca_height_distance,
    leaf_purity,
    level_scores,
    tree_distance,
)
from reference import (
    reference_dendrogram_purity,
    reference_lca_height_distance,
    reference_leaf_purity,
    reference_rho,
    reference_tree_distance,
)


def random_case(seed, k=7, c=5, n=60, empty=0):
    rng = np.random.default_rng(seed)
    tree = l2h(torch.as_tensor(rng.normal(size=(200, k)) * 2))
    preds = rng.integers(k - empty, size=n)  # the last `empty` clusters get no point
    target = rng.integers(c, size=n)
    return tree, torch.as_tensor(preds), torch.as_tensor(target)


def truth_levels(c):
    fine = [i // 2 for i in range(c)]
    return Hierarchy.from_levels([fine, [f // 2 for f in fine]])


def flat_rho(c):
    return 1.0 - np.eye(c)


@pytest.mark.parametrize(("seed", "k", "c", "empty"), [(0, 7, 5, 0), (1, 4, 9, 0), (2, 10, 3, 3), (3, 2, 2, 0), (4, 12, 12, 5)])
def test_dendrogram_purity_matches_brute_force(seed, k, c, empty):
    tree, preds, target = random_case(seed, k, c, empty=empty)
    expected = reference_dendrogram_purity(k, tree.children, preds.numpy(), target.numpy())
    assert float(dendrogram_purity(tree, preds, target)) == pytest.approx(expected, rel=1e-12)
    counts = contingency_table(preds, target, k, c)
    assert float(dendrogram_purity(tree, counts=counts)) == pytest.approx(expected, rel=1e-12)


def test_dendrogram_purity_of_a_multifurcating_tree_matches_brute_force():
    tree = Hierarchy.from_levels([[0, 0, 0, 1, 1, 2]])
    rng = np.random.default_rng(5)
    preds, target = rng.integers(6, size=50), rng.integers(4, size=50)
    expected = reference_dendrogram_purity(6, tree.children, preds, target)
    assert float(dendrogram_purity(tree, torch.as_tensor(preds), torch.as_tensor(target))) == pytest.approx(expected)


@pytest.mark.parametrize(("seed", "k", "c", "empty"), [(0, 7, 5, 0), (1, 4, 9, 0), (2, 10, 8, 3), (3, 2, 2, 0)])
def test_lca_height_distance_matches_brute_force(seed, k, c, empty):
    tree, preds, target = random_case(seed, k, c, empty=empty)
    rho_T = reference_rho(k, tree.children)
    flat = reference_lca_height_distance(rho_T, flat_rho(c), preds.numpy(), target.numpy())
    assert float(lca_height_distance(tree, preds, target)) == pytest.approx(flat, rel=1e-12)
    truth = truth_levels(c)
    expected = reference_lca_height_distance(rho_T, reference_rho(c, truth.children), preds.numpy(), target.numpy())
    assert float(lca_height_distance(tree, preds, target, truth)) == pytest.approx(expected, rel=1e-12)
    binary_truth = l2h(torch.randn(100, c, generator=torch.Generator().manual_seed(seed)))
    expected = reference_lca_height_distance(rho_T, reference_rho(c, binary_truth.children), preds.numpy(), target.numpy())
    got = lca_height_distance(tree, target_hierarchy=binary_truth, counts=contingency_table(preds, target, k, c))
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_lhd_is_zero_when_the_tree_is_the_truth_and_one_cluster_is_pure():
    truth = truth_levels(8)
    target = torch.arange(8).repeat(5)
    assert float(lca_height_distance(truth, target, target, truth)) == pytest.approx(0.0, abs=1e-12)
    assert float(dendrogram_purity(truth, target, target)) == pytest.approx(1.0)


def test_leaf_purity_matches_brute_force():
    _, preds, target = random_case(3, 9, 4, n=200)
    assert float(leaf_purity(preds, target)) == pytest.approx(reference_leaf_purity(preds.numpy(), target.numpy()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_scores_match_scikit_learn_and_hungarian(seed):
    c = 8
    tree, preds, target = random_case(seed, 10, c, n=300)
    truth = truth_levels(c)
    scores = level_scores(tree, preds, target, truth)
    assert sorted(scores) == sorted(f"level{i}/{m}" for i in (1, 2) for m in ("nmi", "ari", "acc"))
    for i, level in enumerate(truth.levels, start=1):
        n_groups = len(set(level.tolist()))
        pred_group = tree.cut(n_groups)[preds].numpy()
        true_group = level[target].numpy()
        assert float(scores[f"level{i}/nmi"]) == pytest.approx(normalized_mutual_info_score(true_group, pred_group))
        assert float(scores[f"level{i}/ari"]) == pytest.approx(adjusted_rand_score(true_group, pred_group))
        table = np.zeros((n_groups, n_groups))
        np.add.at(table, (pred_group, true_group), 1)
        r, col = linear_sum_assignment(-table)
        assert float(scores[f"level{i}/acc"]) == pytest.approx(table[r, col].sum() / len(preds))


def test_level_scores_edge_cases_agree_with_scikit_learn():
    tree = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], num_leaves=4)
    one_group = Hierarchy.from_levels([[0, 0, 0, 0]])
    preds, target = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([0, 1, 2, 3, 3])
    scores = level_scores(tree, preds, target, one_group)
    ones = np.zeros(5, dtype=int)
    assert float(scores["level1/nmi"]) == normalized_mutual_info_score(ones, ones)
    assert float(scores["level1/ari"]) == adjusted_rand_score(ones, ones)
    assert float(scores["level1/acc"]) == 1.0


def test_level_scores_need_levels():
    tree, preds, target = random_case(0, 4, 4)
    with pytest.raises(ValueError, match="from_levels"):
        level_scores(tree, preds, target, l2h(torch.randn(10, 4)))


def test_tree_distance_matches_brute_force():
    a, b = l2h(torch.randn(300, 9)), l2h(torch.randn(300, 9))
    expected = reference_tree_distance(reference_rho(9, a.children), reference_rho(9, b.children))
    assert float(tree_distance(a, b)) == pytest.approx(expected)
    assert float(tree_distance(a, a)) == 0.0
    with pytest.raises(ValueError, match="different leaves"):
        tree_distance(a, l2h(torch.randn(10, 3)))


def test_one_class_gives_nan_purity_with_a_warning():
    tree, preds, _ = random_case(0, 5, 1)
    with pytest.warns(UserWarning, match="undefined with fewer than two classes"):
        assert torch.isnan(dendrogram_purity(tree, preds, torch.zeros_like(preds)))
    assert float(lca_height_distance(tree, preds, torch.zeros_like(preds))) == pytest.approx(
        reference_lca_height_distance(reference_rho(5, tree.children), np.zeros((1, 1)), preds.numpy(), np.zeros(60, int))
    )


def test_no_same_class_pair_gives_nan_purity_with_a_warning():
    tree, preds, target = l2h(torch.randn(30, 4)), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])
    assert np.isnan(reference_dendrogram_purity(4, tree.children, preds.numpy(), target.numpy()))
    with pytest.warns(UserWarning, match="undefined"):
        assert torch.isnan(dendrogram_purity(tree, preds, target))


def test_one_cluster():
    tree = Hierarchy(1, [])
    preds, target = torch.zeros(6, dtype=torch.long), torch.tensor([0, 0, 1, 1, 1, 2])
    expected = reference_dendrogram_purity(1, [], preds.numpy(), target.numpy())
    assert float(dendrogram_purity(tree, preds, target)) == pytest.approx(expected)
    assert float(lca_height_distance(tree, preds, target)) == pytest.approx(
        reference_lca_height_distance(np.zeros((1, 1)), flat_rho(3), preds.numpy(), target.numpy())
    )


def test_logits_are_argmaxed():
    tree, preds, target = random_case(1, 6, 3)
    logits = torch.nn.functional.one_hot(preds, 6).float() * 5 + torch.rand(len(preds), 6)
    assert float(dendrogram_purity(tree, logits, target)) == float(dendrogram_purity(tree, preds, target))


@pytest.mark.parametrize(
    ("preds", "target", "message"),
    [
        (torch.tensor([0, 1, 7]), torch.tensor([0, 1, 1]), r"preds has ids outside 0..5 \(min 0, max 7\)"),
        (torch.tensor([0, 1, -1]), torch.tensor([0, 1, 1]), "preds has ids outside"),
        (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), "preds has 3 points but target has 2"),
        (torch.randn(3, 4), torch.tensor([0, 1, 1]), "logits over 4 clusters, but the tree has 6 leaves"),
        (torch.tensor([0, 1, 2]), torch.tensor([0.0, 1.0, 1.0]), "target must hold integer ids"),
    ],
)
def test_bad_inputs_name_the_problem(preds, target, message):
    tree = l2h(torch.randn(50, 6))
    with pytest.raises(ValueError, match=message):
        dendrogram_purity(tree, preds, target)


def test_target_out_of_the_target_hierarchy_range():
    tree, preds, _ = random_case(0, 6, 4)
    with pytest.raises(ValueError, match=r"target has ids outside 0..3"):
        lca_height_distance(tree, preds, torch.full_like(preds, 4), truth_levels(4))


# ------------------------------------------------------------------------------------------------ modules


def batches(seed=0, n=240, k=8, c=6, size=50):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(c, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) + 3 * torch.nn.functional.one_hot(target % k, k)
    return [(logits[s : s + size], target[s : s + size]) for s in range(0, n, size)], logits, target


def test_tree_from_data_mode_equals_functional_on_all_data():
    parts, logits, target = batches()
    truth = truth_levels(6)
    metric = HierarchyMetrics(target_hierarchy=truth)
    dp = DendrogramPurity()
    for x, y in parts:
        metric.update(x, y)
        dp.update(x, y)
    got = metric.compute()
    tree = l2h(logits)
    assert metric.hierarchy == tree
    assert float(got["dp"]) == pytest.approx(float(dendrogram_purity(tree, logits, target)))
    assert float(got["lhd"]) == pytest.approx(float(lca_height_distance(tree, logits, target, truth)))
    assert float(got["leaf_purity"]) == pytest.approx(float(leaf_purity(logits, target)))
    assert int(got["empty_clusters"]) == 8 - len(set(logits.argmax(1).tolist()))
    for key, value in level_scores(tree, logits, target, truth).items():
        assert float(got[key]) == pytest.approx(float(value))
    assert float(dp.compute()) == pytest.approx(float(got["dp"]))
    metric.reset()
    metric.update(*parts[0])
    assert metric.compute()["dp"] == pytest.approx(float(dendrogram_purity(l2h(parts[0][0]), *parts[0])))


def test_fixed_tree_mode_keeps_only_counts():
    parts, logits, target = batches()
    tree = l2h(logits)
    metric = LCAHeightDistance(hierarchy=tree, num_classes=6)
    for x, y in parts:
        metric.update(x.argmax(1), y)
    assert metric.counts.shape == (8, 6) and int(metric.counts.sum()) == 240
    assert float(metric.compute()) == pytest.approx(float(lca_height_distance(tree, logits, target)))
    purity = LeafPurity(num_clusters=8, num_classes=6)
    for x, y in parts:
        purity.update(x, y)
    assert float(purity.compute()) == pytest.approx(reference_leaf_purity(logits.argmax(1).numpy(), target.numpy()))


def test_module_errors():
    metric = DendrogramPurity()
    metric.update(torch.randn(4, 5), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="number of clusters changed between batches: 5 before, 6 now"):
        metric.update(torch.randn(4, 6), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="update needs logits"):
        DendrogramPurity().update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target must be class ids"):
        DendrogramPurity().update(torch.randn(4, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="aggregation must be one of"):
        DendrogramPurity(aggregation="max")
    with pytest.raises(ValueError, match="max_samples"):
        DendrogramPurity(max_samples=0)
    with pytest.raises(ValueError, match="num_classes=3 but target_hierarchy has 4"):
        DendrogramPurity(num_classes=3, target_hierarchy=truth_levels(4))


def test_max_samples_keeps_the_first_points_and_says_so():
    parts, logits, target = batches()
    metric = DendrogramPurity(max_samples=120)
    with pytest.warns(UserWarning, match="max_samples=120 reached"):
        for x, y in parts:
            metric.update(x, y)
    assert float(metric.compute()) == pytest.approx(float(dendrogram_purity(l2h(logits[:120]), logits[:120], target[:120])))


def test_plot_returns_figure_and_axes_without_pyplot():
    import matplotlib.pyplot as plt

    parts, _, _ = batches()
    metric = HierarchyMetrics()
    values = []
    for x, y in parts:
        metric.update(x, y)
        values.append(metric.compute())
    fig, ax = metric.plot()
    fig2, _ = metric.plot(values)
    fig3, ax3 = DendrogramPurity(hierarchy=l2h(torch.randn(30, 8))).plot(torch.tensor(0.5))
    assert fig.axes == [ax] and ax3.get_title().startswith("dendrogram purity")
    assert len(fig2.axes[0].lines) == 3
    assert plt.get_fignums() == []


def test_metric_objects_log_from_a_lightning_module(tmp_path):
    from lightning.pytorch import LightningModule, Trainer

    parts, logits, target = batches()

    class Logged(LightningModule):
        def __init__(self):
            super().__init__()
            self.dp = DendrogramPurity()
            self.anchor = torch.nn.Linear(1, 1)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.dp.update(x, y)
            self.log("val/dp", self.dp)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(logits, target), batch_size=50)
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    result = trainer.validate(Logged(), loader, verbose=False)
    assert result[0]["val/dp"] == pytest.approx(float(dendrogram_purity(l2h(logits), logits, target)))


# ------------------------------------------------------------------------------------------------ blocks and scale


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocked_sums_match_brute_force(seed, monkeypatch):
    import importlib

    contingency = importlib.import_module("l2h_lightning.metrics.functional.contingency")
    lhd = importlib.import_module("l2h_lightning.metrics.functional.lca_height_distance")  # the package re-exports the function's name

    monkeypatch.setattr(contingency, "_BLOCK", 30)  # one or two classes per block
    monkeypatch.setattr(lhd, "_BLOCK", 30)  # one or two nodes of T per block
    k, c = 9, 8
    tree, preds, target = random_case(seed, k, c, n=80, empty=2)
    rho_T = reference_rho(k, tree.children)
    expected = reference_dendrogram_purity(k, tree.children, preds.numpy(), target.numpy())
    assert float(dendrogram_purity(tree, preds, target)) == pytest.approx(expected, rel=1e-12)
    for truth in (truth_levels(c), l2h(torch.randn(60, c, generator=torch.Generator().manual_seed(seed))), None):
        rho_H = flat_rho(c) if truth is None else reference_rho(c, truth.children)
        expected = reference_lca_height_distance(rho_T, rho_H, preds.numpy(), target.numpy())
        got = lca_height_distance(tree, counts=contingency_table(preds, target, k, c), target_hierarchy=truth)
        assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_tree_distance_of_mixed_shapes_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 16))
    a = l2h(torch.as_tensor(rng.normal(size=(60, k))))
    b = Hierarchy.from_levels([rng.integers(0, 3, size=k).tolist()]) if seed % 2 else l2h(torch.as_tensor(rng.normal(size=(60, k))))
    expected = reference_tree_distance(reference_rho(k, a.children), reference_rho(k, b.children))
    assert float(tree_distance(a, b)) == pytest.approx(expected, abs=1e-14)
    assert float(tree_distance(b, a)) == pytest.approx(expected, abs=1e-14)


K_CHAIN, BLOCK = 10_000, 1000  # a chain of 10,000 clusters; class c holds clusters c*1000 .. c*1000+999


def chain(k, reverse=False):
    if reverse:  # ((((K-1, K-2), K-3), ...), 0)
        return Hierarchy.from_merges([[k - 1, k - 2]] + [[k + i - 1, k - 2 - i] for i in range(1, k - 1)], num_leaves=k)
    return Hierarchy.from_merges([[0, 1]] + [[k + i - 1, i + 1] for i in range(1, k - 1)], num_leaves=k)


@pytest.fixture(scope="module")
def deep():
    return chain(K_CHAIN)


def chain_points():
    preds = torch.arange(K_CHAIN)  # one point per cluster
    return preds, preds // BLOCK


def test_dendrogram_purity_of_a_chain_in_closed_form(deep):
    # pair (i < j) of one class: its LCA holds clusters 0..j, of which j - c*B + 1 are of the class
    j = np.arange(K_CHAIN)
    s = j % BLOCK  # points of j's class before j
    expected = (s * (s + 1) / (j + 1)).sum() / (K_CHAIN // BLOCK * BLOCK * (BLOCK - 1) / 2)
    assert float(dendrogram_purity(deep, *chain_points())) == pytest.approx(expected, rel=1e-12)


def test_lca_height_distance_of_a_chain_in_closed_form(deep):
    preds, target = chain_points()
    j = np.arange(K_CHAIN, dtype=np.float64)
    same = j % BLOCK  # earlier points of the class: rho_H = 0; the others: rho_H = 1
    rho = j / (K_CHAIN - 1)  # rho_T(i, j) for every i < j
    pairs = K_CHAIN * (K_CHAIN - 1) / 2
    flat = (same * rho + (j - same) * (1 - rho)).sum() / pairs
    assert float(lca_height_distance(deep, preds, target)) == pytest.approx(flat, rel=1e-12)
    # truth: classes 0-4 and 5-9 form two groups: rho_H = 4/9 inside a group, 1 across
    truth = Hierarchy.from_levels([[c // 5 for c in range(10)]])
    cls = j // BLOCK
    in_group = np.where(cls < 5, j, j - 5 * BLOCK) - same  # earlier points of the group, other classes
    across = j - same - in_group
    expected = (same * rho + in_group * np.abs(rho - 4 / 9) + across * (1 - rho)).sum() / pairs
    assert float(lca_height_distance(deep, preds, target, truth)) == pytest.approx(expected, rel=1e-12)


def test_level_scores_leaf_purity_and_all_scores_on_a_chain(deep):
    preds, target = chain_points()
    truth = Hierarchy.from_levels([[c // 5 for c in range(10)]])
    scores = level_scores(deep, preds, target, truth)
    pred_group = deep.cut(2)[preds].numpy()  # the last cluster alone
    assert pred_group.sum() == 1 and pred_group[-1] == 1
    true_group = (target // 5).numpy()
    assert float(scores["level1/nmi"]) == pytest.approx(normalized_mutual_info_score(true_group, pred_group))
    assert float(scores["level1/ari"]) == pytest.approx(adjusted_rand_score(true_group, pred_group))
    assert float(scores["level1/acc"]) == pytest.approx((5000 + 1) / K_CHAIN)
    noisy = torch.cat([target, (target[::4] + 1) % 10])  # a second point in every 4th cluster, of another class
    assert float(leaf_purity(torch.cat([preds, preds[::4]]), noisy)) == pytest.approx(K_CHAIN / (K_CHAIN + K_CHAIN // 4))
    everything = hierarchy_scores(deep, preds, target, truth)
    assert float(everything["dp"]) == float(dendrogram_purity(deep, preds, target))
    assert float(everything["lhd"]) == float(lca_height_distance(deep, preds, target, truth))
    assert float(everything["leaf_purity"]) == 1.0 and int(everything["empty_clusters"]) == 0


def test_tree_distance_of_two_chains_in_closed_form(deep):
    # rho_a(i, j) = j / (K-1) and rho_b(i, j) = (K-1-i) / (K-1) for i < j
    k = K_CHAIN
    total = 0.0
    for start in range(0, k, 1000):
        i = np.arange(start, min(k, start + 1000))[:, None]
        j = np.arange(k)[None, :]
        total += np.where(j > i, np.abs(i + j - (k - 1)), 0).sum()
    expected = total / (k - 1) / (k * (k - 1) / 2)
    assert float(tree_distance(deep, chain(k, reverse=True))) == pytest.approx(expected, rel=1e-13)
    assert float(tree_distance(deep, deep)) == 0.0


def test_fixed_tree_modules_on_a_chain(deep):
    preds, target = chain_points()
    dp, lhd = DendrogramPurity(hierarchy=deep, num_classes=10), LCAHeightDistance(hierarchy=deep, num_classes=10)
    for s in range(0, K_CHAIN, 3000):
        dp.update(preds[s : s + 3000], target[s : s + 3000])
        lhd.update(preds[s : s + 3000], target[s : s + 3000])
    assert float(dp.compute()) == pytest.approx(float(dendrogram_purity(deep, preds, target)), rel=1e-12)
    assert float(lhd.compute()) == pytest.approx(float(lca_height_distance(deep, preds, target)), rel=1e-12)


def test_tree_mode_keeps_compact_copies_and_a_refused_batch_changes_nothing():
    big = torch.randn(1000, 8)
    metric = DendrogramPurity(store_dtype=torch.float16)
    metric.update(big[10:20], torch.arange(10) % 4)
    kept = metric.logits[-1]
    assert kept.untyped_storage().nbytes() == 10 * 8 * 2  # not the 1000-row tensor it was sliced from
    with pytest.raises(ValueError, match="exceed the range of store_dtype"):
        metric.update(torch.full((3, 8), 1e6), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="number of clusters changed"):
        metric.update(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
    assert len(metric.logits) == 2 and metric._seen == 10  # the placeholder and the one accepted batch
    stored = big[10:20].half().float()  # what the metric scores: the logits as float16 kept them
    expected = dendrogram_purity(l2h(stored), stored, torch.arange(10) % 4)
    assert float(metric.compute()) == pytest.approx(float(expected))
