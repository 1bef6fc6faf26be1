"""explain/: surprising merges, clade support, suggested cuts, each checked from its definition on planted data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from l2h_lightning import Hierarchy, l2h
from l2h_lightning.explain import bootstrap_weights, clade_support, cut_scores, suggest_cuts, surprising_merges
from l2h_lightning.explain.support import clade_keys


def planted_logits(levels, n_per=30, gaps=(6.0, 3.0, 1.5), noise=1.0, seed=0):
    """Logits of a classifier that knows a hierarchy: +gaps[0] on the own class, +gaps[l] on every class sharing
    the level-l group (levels: label maps over K classes, finest first), plus Gaussian noise. Returns (logits, y)."""
    gen = torch.Generator().manual_seed(seed)
    K = len(levels[0])
    y = torch.arange(K).repeat_interleave(n_per)
    x = torch.randn(len(y), K, generator=gen, dtype=torch.float64) * noise
    x[torch.arange(len(y)), y] += gaps[0]
    for level, gap in zip(levels[1:], gaps[1:]):
        level = torch.as_tensor(level)
        x += gap * (level[y][:, None] == level[None, :])
    return x, y


def random_tree(K, seed, evidence=True):
    """A random binary tree over K leaves, with made-up evidence."""
    rng = np.random.default_rng(seed)
    live, merges = list(range(K)), []
    for i in range(K - 1):
        a, b = rng.choice(len(live), 2, replace=False)
        merges.append((live[a], live[b]))
        live = [v for j, v in enumerate(live) if j not in (a, b)] + [K + i]
    ev = None
    if evidence:
        points = rng.integers(1, 50, K - 1).astype(float)
        ev = {"points": points, "mass": points * rng.uniform(0, 1, K - 1), "partner_value": rng.uniform(0, 5, K - 1)}
    return Hierarchy.from_merges(merges, K, evidence=ev)


def leaf_sets(tree):
    sets = [frozenset([i]) for i in range(tree.num_leaves)]
    for ch in tree.children:
        sets.append(frozenset().union(*(sets[c] for c in ch)))
    return sets


# ----------------------------------------------------------------------------------------- surprising merges


def brute_surprises(tree, truth, counts):
    """Every record's numbers straight from the definition: explicit pairs, explicit LCAs."""
    K, C = tree.num_leaves, truth.num_leaves
    rho_H = truth.rho().numpy()
    tsets = leaf_sets(truth)
    out = {}
    for i, (a, b) in enumerate(tree.children):
        sa, sb = sorted(leaf_sets(tree)[a]), sorted(leaf_sets(tree)[b])
        pairs, total, lca = 0.0, 0.0, {}
        for k, l in itertools.product(sa, sb):
            for c, d in itertools.product(range(C), range(C)):
                w = counts[k, c] * counts[l, d]
                if w:
                    pairs += w
                    total += w * rho_H[c, d]
                    u = min((v for v, s in enumerate(tsets) if c in s and d in s), key=lambda v: len(tsets[v]))
                    lca[u] = lca.get(u, 0.0) + w
        rho = (len(sa) + len(sb) - 1) / (K - 1)
        ev = tree.evidence
        strength = 1.0 if ev is None else min(1.0, float(ev["mass"][i] / ev["points"][i]))
        contradiction = max(0.0, total / pairs - rho) if pairs else 0.0
        best = max(lca, key=lambda u: (round(lca[u], 9), len(tsets[u]), u)) if lca else None
        out[K + i] = dict(truth_rho=total / pairs if pairs else math.nan, contradiction=contradiction,
                          surprise=contradiction * strength, truth_lca=best)  # fmt: skip
    return out


@pytest.mark.parametrize("with_counts", [False, True])
def test_surprises_match_brute_force(with_counts):
    K = 12
    truth = Hierarchy.from_levels([np.arange(K) // 2, np.arange(K) // 4, np.arange(K) // 8])
    rng = np.random.default_rng(3)
    if with_counts:
        counts = rng.integers(0, 6, (K, K)) * (rng.uniform(size=(K, K)) < 0.3)
        counts[np.arange(K), np.arange(K)] += 20
        counts[5] = 0  # a cluster nobody predicts
    else:
        counts = np.eye(K, dtype=int)
    for seed in range(3):
        tree = random_tree(K, seed)
        got = surprising_merges(tree, truth, counts=torch.tensor(counts) if with_counts else None)
        want = brute_surprises(tree, truth, counts)
        assert sorted(r["node"] for r in got) == list(range(K, 2 * K - 1))
        for r in got:
            w = want[r["node"]]
            for key in ("truth_rho", "contradiction", "surprise"):
                assert r[key] == pytest.approx(w[key], abs=1e-12, nan_ok=True), (r["node"], key)
            assert r["truth_lca"] == w["truth_lca"]
            assert r["truth_level"] == (None if w["truth_lca"] is None else ([0.0] * K + truth.heights)[w["truth_lca"]])
            a, b = tree.children[r["node"] - K]
            assert r["leaves"] == (tree.leaves(a), tree.leaves(b))
        assert [r["surprise"] for r in got] == sorted((r["surprise"] for r in got), reverse=True)


def spurious_setup():
    """4 superclasses of 4 classes; class 1 (superclass 0) and class 6 (superclass 1) put their second choice on
    each other instead of on their own superclass."""
    K = 16
    fine, coarse = torch.arange(K), torch.arange(K) // 4
    x, y = planted_logits([fine, coarse], n_per=25, gaps=(6.0, 2.5), seed=1)
    for c, other in ((1, 6), (6, 1)):
        rows = y == c
        x[rows] -= 2.5 * (coarse[None, :] == coarse[c]).double()  # no pull to the own superclass ...
        x[rows, c] += 2.5
        x[rows, other] += 4.0  # ... but a strong second choice across
    return x, y, Hierarchy.from_levels([coarse])


def test_planted_spurious_pair_ranks_first():
    x, y, truth = spurious_setup()
    tree = l2h(x)
    names = [f"c{i}" for i in range(16)]
    got = surprising_merges(tree, truth, logits=x, names=names, group_names=["animals", "cars", "trees", "fish"], top=3)
    first = got[0]
    assert sorted(map(tuple, first["leaves"])) == [(1,), (6,)]
    assert first["truth_lca"] == truth.root and first["truth_rho"] == 1.0
    assert first["surprise"] > 2 * got[1]["surprise"]
    assert set(first["label"].split(" + ")) == {"c1 (animals)", "c6 (cars)"}
    # the points: the selected class's points whose masked-softmax choice is the partner, most probable first
    sel, partner = first["leaves"][0][0], first["leaves"][1][0]
    rows = (y == sel).nonzero().squeeze(1)
    masked = x[rows].clone()
    masked[:, sel] = -math.inf
    p = masked.softmax(1)
    q, r = p.max(1)
    moved = sorted(((-float(q[i]), int(rows[i])) for i in range(len(rows)) if r[i] == partner))
    assert first["points"] == [i for _, i in moved][:10]
    assert len(first["points"]) == 10


def test_surprise_labels_and_inputs():
    tree = Hierarchy.from_merges([[0, 2], [1, 3], [4, 5]], num_leaves=4)
    truth = Hierarchy.from_levels([[0, 0, 1, 1]])
    by_node = surprising_merges(tree, truth, names="abcd", group_names={4: "vowels", 5: "consonants"})
    assert by_node[0]["label"] == "a (vowels) + c (consonants)"
    assert by_node[0]["evidence"] is None and by_node[0]["strength"] == 1.0
    assert by_node[-1]["node"] == 6 and by_node[-1]["surprise"] == 0.0
    same = random_tree(9, 5, evidence=False)
    assert all(r["surprise"] == 0.0 for r in surprising_merges(same, same))  # the truth itself contradicts nothing
    flat = surprising_merges(same, Hierarchy.from_levels([[0] * 9]))  # a flat truth: every low join contradicts it
    assert all(r["contradiction"] == pytest.approx(1 - r["rho"]) for r in flat)
    with pytest.raises(ValueError, match="counts"):
        surprising_merges(tree, Hierarchy.from_levels([[0, 0, 1]]))
    with pytest.raises(ValueError, match="names"):
        surprising_merges(tree, truth, names="abc")
    with pytest.raises(ValueError, match="top"):
        surprising_merges(tree, truth, top=-1)
    with pytest.raises(ValueError, match="logits"):
        surprising_merges(tree, truth, logits=torch.zeros(3, 5))


def test_surprises_scale_to_a_chain_of_10000():
    K = 10_000
    chain = Hierarchy.from_merges([[0, 1]] + [[K + i, i + 2] for i in range(K - 2)], num_leaves=K)
    truth = Hierarchy.from_levels([torch.arange(K) // 10, torch.arange(K) // 100])
    top = surprising_merges(chain, truth, top=5)
    # leaf 100 joining {0..99} is the first join across the coarse groups, the lowest one of its kind
    assert top[0]["node"] == K + 99 and top[0]["surprise"] == pytest.approx(1 - 100 / (K - 1))
    # leaf 101 joining {0..100}: 100 of its 101 pairs are across coarse groups, one inside a fine group of 10
    assert top[1]["node"] == K + 100
    assert top[1]["surprise"] == pytest.approx((100 + 9 / (K - 1)) / 101 - 101 / (K - 1))
    assert top[0]["truth_lca"] == truth.root and top[0]["leaves"] == (list(range(100)), [100])


# ----------------------------------------------------------------------------------------------- clade support


def test_bootstrap_weights_follow_the_documented_draws():
    got = [w.clone() for w in bootstrap_weights(7, 3, seed=5)]
    g = torch.Generator().manual_seed(5)
    for w in got:
        assert torch.equal(w, torch.bincount(torch.randint(7, (7,), generator=g), minlength=7))
    pw = torch.rand(7, dtype=torch.float64)
    assert all(torch.equal(a, pw * b) for a, b in zip(bootstrap_weights(7, 3, seed=5, weights=pw), got))


def test_support_equals_brute_force_loop_of_weighted_runs():
    x, _ = planted_logits([torch.arange(6), torch.arange(6) // 3], n_per=15, gaps=(3.0, 1.0), noise=1.5, seed=2)
    tree = l2h(x)
    support = clade_support(x, n_boot=6, seed=11)
    sets = leaf_sets(tree)[6:]
    g = torch.Generator().manual_seed(11)
    found = torch.zeros(len(sets), dtype=torch.float64)
    for _ in range(6):
        counts = torch.bincount(torch.randint(len(x), (len(x),), generator=g), minlength=len(x))
        rep = set(leaf_sets(l2h(x.repeat_interleave(counts, 0)))[6:])  # integer weights = repeated rows
        found += torch.tensor([s in rep for s in sets], dtype=torch.float64)
    assert torch.equal(support, found / 6)
    assert float(support[:-1].min()) < 1.0  # noisy enough that some clade is not rebuilt every time
    assert float(support[-1]) == 1.0

    # with point weights: the default tree is the weighted one, each replicate weighs rows by weight * count
    w = torch.rand(len(x), generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    support = clade_support(x, n_boot=4, seed=2, weights=w)
    sets = leaf_sets(l2h(x, weights=w))[6:]
    g = torch.Generator().manual_seed(2)
    found = torch.zeros(len(sets), dtype=torch.float64)
    for _ in range(4):
        counts = torch.bincount(torch.randint(len(x), (len(x),), generator=g), minlength=len(x))
        rep = set(leaf_sets(l2h(x, weights=w * counts))[6:])
        found += torch.tensor([s in rep for s in sets], dtype=torch.float64)
    assert torch.equal(support, found / 4)


def test_planted_clades_are_supported_and_noise_is_not():
    levels = [torch.arange(9), torch.arange(9) // 3]
    x, _ = planted_logits(levels, n_per=40, gaps=(5.0, 2.5), seed=0)
    tree = l2h(x)
    support = clade_support(x, tree, n_boot=20, seed=0)
    sets = leaf_sets(tree)[9:]
    supers = [frozenset(range(s, s + 3)) for s in (0, 3, 6)]
    assert all(s in sets for s in supers)
    assert all(float(support[sets.index(s)]) >= 0.9 for s in supers)

    noise = torch.randn(360, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    low = clade_support(noise, n_boot=20, seed=0)
    assert float(low[:-1].mean()) < 0.5


def test_support_is_deterministic_under_seed():
    x, _ = planted_logits([torch.arange(8), torch.arange(8) // 2], n_per=10, gaps=(3.0, 1.0), noise=2.0, seed=4)
    a = clade_support(x, n_boot=8, seed=3)
    assert torch.equal(a, clade_support(x, n_boot=8, seed=3))
    other = bootstrap_weights(80, 8, seed=4)
    assert not all(torch.equal(u, v) for u, v in zip(bootstrap_weights(80, 8, seed=3), other))


def test_support_inputs():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="n_boot"):
        clade_support(x, n_boot=0)
    with pytest.raises(ValueError, match="tree"):
        clade_support(x, Hierarchy.from_merges([[0, 1]], num_leaves=2), n_boot=2)
    with pytest.raises(ValueError, match="2-D"):
        clade_support(torch.randn(5), n_boot=2)
    assert clade_support(torch.randn(4, 1), n_boot=2).shape == (0,)


def test_clade_keys_tell_leaf_sets_apart():
    a, b = random_tree(30, 0, evidence=False), random_tree(30, 1, evidence=False)
    sa, sb = leaf_sets(a)[30:], leaf_sets(b)[30:]
    ka, kb = clade_keys(a), clade_keys(b)
    for i, s in enumerate(sa):
        assert (ka[i] in kb) == (s in sb)
    assert ka[-1] == kb[-1]  # the root's leaf set is everything in both


# ------------------------------------------------------------------------------------------------ suggested cuts


def test_cut_scores_follow_the_definition():
    tree = random_tree(9, 2)
    ev, sizes = tree.evidence, tree.sizes()
    A, points = ev["partner_value"].tolist(), ev["points"].tolist()
    G = [sizes[a] for a, _ in tree.children]
    raw = [A[i] * (9 - G[i]) / points[i] for i in range(8)]
    c = float(np.median([points[i] / G[i] for i in range(8)]))  # 8 merges: the mean of the middle two
    lift = [(points[i] * raw[i] + c) / (points[i] + c) for i in range(8)]
    for method, values in (("lift", lift), ("raw_lift", raw), ("partner_value", A)):
        scores = cut_scores(tree, method=method)
        for n in range(2, 9):
            assert float(scores[n]) == pytest.approx(math.log(values[9 - n - 1]) - math.log(values[9 - n])), (method, n)
        assert scores[:2].isnan().all() and scores[9].isnan()
    scores = cut_scores(tree)
    want = sorted((n for n in range(2, 9) if scores[n] > 1e-6), key=lambda n: -float(scores[n]))[:2]
    assert suggest_cuts(tree, max_suggestions=2) == want
    # a chain whose selected side is always one leaf: equal lifts up to rounding (0.1 * 3 != 0.3) suggest nothing
    chain = Hierarchy.from_merges([[1, 0]] + [[i + 2, 9 + i] for i in range(7)], 9,
                                  evidence={"partner_value": [0.1 * 3, 0.3] * 4, "points": [1.0] * 8})  # fmt: skip
    assert 0 < float(cut_scores(chain).nan_to_num().abs().max()) < 1e-12
    assert suggest_cuts(chain) == []


def test_planted_two_level_hierarchy_yields_its_level_counts():
    K = 24
    fine = torch.arange(K)
    levels = [fine, fine // 4, fine // 12]  # 6 groups of 4 in 2 groups of 3
    for seed in range(3):
        x, _ = planted_logits(levels, n_per=20, gaps=(6.0, 3.0, 1.5), seed=seed)
        tree = l2h(x)
        got = suggest_cuts(tree)
        assert {6, 2} <= set(got), (seed, got)
        assert torch.equal(tree.cut(6), fine // 4) and torch.equal(tree.cut(2), fine // 12)


def test_suggest_cuts_inputs():
    with pytest.raises(ValueError, match="evidence"):
        suggest_cuts(Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3))
    with pytest.raises(ValueError, match="method"):
        cut_scores(random_tree(4, 0), method="nope")
    with pytest.raises(ValueError, match="max_suggestions"):
        suggest_cuts(random_tree(4, 0), max_suggestions=-1)
    assert suggest_cuts(random_tree(4, 0), max_suggestions=0) == []


# ------------------------------------------------------------------------------------ rows on several processes


def _ddp_worker(rank, port, out_dir):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x, _ = ddp_logits()
    mine = x[:50] if rank == 0 else x[50:]  # uneven shards
    counts = torch.stack(list(bootstrap_weights(len(mine), 400, seed=7, process_group=dist.group.WORLD)))
    support = clade_support(mine, n_boot=5, seed=7, process_group=dist.group.WORLD)
    torch.save({"counts": counts, "support": support}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def ddp_logits():
    return planted_logits([torch.arange(6), torch.arange(6) // 2], n_per=25, gaps=(3.0, 1.0), noise=1.5, seed=9)


def test_bootstrap_over_processes_resamples_the_concatenated_rows(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    counts = torch.cat((r0["counts"], r1["counts"]), 1)  # (B, 150): replicate b over the concatenated rows
    assert (counts.sum(1) == 150).all()
    assert (r0["counts"].sum(1) != 50).any()  # the split of the draws between processes is itself random
    # Multinomial(150, uniform): every row is drawn once on average, with variance about 1 per replicate
    assert float((counts.double().mean(0) - 1).abs().max()) < 0.25
    assert float(counts.double().var(0).mean()) == pytest.approx(1 - 1 / 150, abs=0.1)
    # the support is the same on both processes and is that of the weighted runs on all rows
    assert torch.equal(r0["support"], r1["support"])
    x, _ = ddp_logits()
    sets = leaf_sets(l2h(x))[6:]
    found = torch.zeros(len(sets), dtype=torch.float64)
    for c in counts[:5]:
        rep = set(leaf_sets(l2h(x, weights=c))[6:])
        found += torch.tensor([s in rep for s in sets], dtype=torch.float64)
    assert torch.equal(r0["support"], found / 5)
