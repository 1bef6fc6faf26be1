import json

import numpy as np
import pytest
import torch
from scipy.cluster import hierarchy as sch

from l2h_lightning import Hierarchy, l2h
from reference import reference_rho


def tree_from_logits(k=12, n=400, seed=0):
    return l2h(torch.as_tensor(np.random.default_rng(seed).normal(size=(n, k)) * 3))


def same_partition(a, b) -> bool:
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))


def test_linkage_is_valid_for_scipy_with_monotone_heights_and_counts():
    tree = tree_from_logits()
    Z = tree.to_linkage()
    assert Z.dtype == np.float64 and Z.shape == (11, 4)
    assert sch.is_valid_linkage(Z) and sch.is_monotonic(Z)
    np.testing.assert_array_equal(Z[:, 2], np.arange(1, 12))
    assert Z[-1, 3] == 12
    assert Hierarchy.from_linkage(Z) == tree


@pytest.mark.parametrize("k", [1, 2, 5, 11, 12])
def test_cut_matches_scipy_fcluster(k):
    tree = tree_from_logits()
    ours = tree.cut(k)
    assert sorted(set(ours.tolist())) == list(range(k))
    assert same_partition(ours, sch.fcluster(tree.to_linkage(), k, "maxclust"))


def test_cut_rejects_impossible_group_counts():
    with pytest.raises(ValueError, match="n_groups must be in 1..12"):
        tree_from_logits().cut(13)


def test_from_linkage_reads_scipy_trees():
    Z = sch.linkage(np.random.default_rng(1).normal(size=(9, 3)), "average")
    tree = Hierarchy.from_linkage(Z)
    np.testing.assert_allclose(tree.to_linkage(), Z)
    np.testing.assert_allclose(tree.rho().numpy(), reference_rho(tree.num_leaves, tree.children))


def test_rho_of_a_learned_tree_matches_brute_force():
    tree = tree_from_logits(k=9)
    np.testing.assert_allclose(tree.rho().numpy(), reference_rho(tree.num_leaves, tree.children))


def test_from_levels_rho_by_hand():
    # 7 classes; level 1: {0,1} {2,3} {4,5,6}; level 2: {0,1,2,3} {4,5,6}
    levels = [[0, 0, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 1, 1]]
    tree = Hierarchy.from_levels(levels)
    assert not tree.is_binary and tree.num_leaves == 7
    rho = tree.rho()
    assert rho[0, 1] == pytest.approx(1 / 6)  # LCA {0,1}: 2 leaves
    assert rho[0, 2] == pytest.approx(3 / 6)  # LCA {0,1,2,3}: 4 leaves
    assert rho[0, 4] == pytest.approx(1.0)  # the root
    assert rho[4, 6] == pytest.approx(2 / 6)  # LCA {4,5,6}
    assert rho[3, 3] == 0
    np.testing.assert_allclose(rho.numpy(), reference_rho(tree.num_leaves, tree.children))
    assert [m.tolist() for m in tree.levels] == levels


def test_from_levels_rejects_levels_that_do_not_nest():
    with pytest.raises(ValueError, match="do not nest"):
        Hierarchy.from_levels([[0, 0, 1, 1], [0, 1, 1, 1]])
    with pytest.raises(ValueError, match="one entry per leaf"):
        Hierarchy.from_levels([[0, 0, 1, 1], [0, 0, 1]])


def test_multifurcating_trees_say_what_they_cannot_do():
    tree = Hierarchy.from_levels([[0, 0, 0, 1, 1]])
    for call in (lambda: tree.merges, tree.to_linkage, lambda: tree.cut(2)):
        with pytest.raises(ValueError, match="needs a binary tree"):
            call()
    assert tree.leaves(tree.root) == [0, 1, 2, 3, 4]


def test_from_parents():
    tree = Hierarchy.from_parents([4, 4, 5, 5, 6, 6, -1])
    assert tree.merges.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert tree.parents.tolist() == [4, 4, 5, 5, 6, 6, -1]
    star = Hierarchy.from_parents([3, 3, 3, -1])
    assert not star.is_binary and star.children == [(0, 1, 2)]


def test_from_parents_errors():
    with pytest.raises(ValueError, match="exactly one root"):
        Hierarchy.from_parents([2, 2, -1, -1])
    with pytest.raises(ValueError, match="cycle"):
        Hierarchy.from_parents([3, 4, 5, 4, 3, -1])
    with pytest.raises(ValueError, match="leaves .* must be nodes 0..1"):
        Hierarchy.from_parents([-1, 0, 0])
    with pytest.raises(ValueError, match="at least 2"):
        Hierarchy.from_parents([3, 3, 4, 5, 5, -1])


@pytest.mark.parametrize("names", [None, ["cat", "dog", "sea lion", "o'clock", "a,b", "x:y", "(z)", "w"]])
def test_newick_round_trip(names):
    tree = tree_from_logits(k=8)
    text = tree.to_newick(names)
    assert text.endswith(";") and text.count(":") == 14 + (names is not None)
    assert Hierarchy.from_newick(text, names) == tree


def test_newick_of_a_levels_tree_keeps_its_shape():
    tree = Hierarchy.from_levels([[0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]])
    back = Hierarchy.from_newick(tree.to_newick())
    assert torch.equal(back.rho(), tree.rho())


def test_newick_errors():
    with pytest.raises(ValueError, match="Newick"):
        Hierarchy.from_newick("((0,1),2")
    with pytest.raises(ValueError, match="not in names"):
        Hierarchy.from_newick("(a,b);", names=["a", "c"])


def test_dict_round_trip_through_json():
    for tree in (tree_from_logits(), Hierarchy.from_levels([[0, 0, 1], [0, 0, 0]])):
        back = Hierarchy.from_dict(json.loads(json.dumps(tree.to_dict())))
        assert back == tree
        assert (back.levels is None) == (tree.levels is None)
    with pytest.raises(ValueError, match="not a saved Hierarchy"):
        Hierarchy.from_dict({"num_leaves": 3})


def test_leaves_sizes_and_repr():
    tree = Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3)
    assert tree.leaves(4) == [0, 1, 2] and tree.leaves(3) == [0, 1] and tree.leaves(2) == [2]
    assert tree.sizes() == [1, 1, 1, 2, 3]
    assert repr(tree) == "Hierarchy(num_leaves=3, binary, '((0:1,1:1):1,2:2);')"
    with pytest.raises(ValueError, match="node must be in 0..4"):
        tree.leaves(5)


def test_invalid_trees_are_rejected():
    with pytest.raises(ValueError, match="more than one parent"):
        Hierarchy(3, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="not connected"):
        Hierarchy(4, [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="at least 2"):
        Hierarchy(2, [[0]])


def test_coarse_groups_pick_the_coarsest_level_that_splits():
    assert Hierarchy.from_levels([[0, 0, 1, 1], [0, 0, 0, 0]]).coarse_groups() == [0, 0, 1, 1]
    assert Hierarchy.from_levels([[0, 1, 2, 2], [0, 0, 1, 1]]).coarse_groups() == [0, 0, 1, 1]
    assert Hierarchy.from_levels([[0, 0, 0]]).coarse_groups() is None
    assert tree_from_logits().coarse_groups() is None


# ------------------------------------------------------------------------------------------------ evidence

def evidence_tree():
    evidence = {
        "score": [0.5, float("nan")],
        "partner_value": [0.9, 0.25],
        "runner_up": [2, -1],
        "runner_up_value": [0.1, float("nan")],
        "points": [40.0, 12.5],
        "mass": [1.8, 0.75],
    }
    return Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3, evidence=evidence), evidence


def test_evidence_is_kept_with_its_dtypes():
    tree, evidence = evidence_tree()
    assert set(tree.evidence) == set(evidence)
    assert tree.evidence["runner_up"].dtype == torch.int64 and tree.evidence["runner_up"].tolist() == [2, -1]
    for key in ("score", "partner_value", "runner_up_value", "points", "mass"):
        assert tree.evidence[key].dtype == torch.float64
        torch.testing.assert_close(tree.evidence[key], torch.tensor(evidence[key], dtype=torch.float64), equal_nan=True)
    assert Hierarchy.from_merges([[0, 1], [3, 2]], 3).evidence is None


def test_evidence_is_a_copy_of_what_was_passed():
    points = torch.tensor([4.0, 5.0])
    tree = Hierarchy.from_merges([[0, 1], [3, 2]], 3, evidence={"points": points})
    points[0] = -1
    assert tree.evidence["points"].tolist() == [4.0, 5.0]


def test_evidence_survives_json_with_nan_and_keeps_dtypes():
    tree, _ = evidence_tree()
    saved = tree.to_dict()
    text = json.dumps(saved, allow_nan=False)  # strict JSON: NaN is stored as null
    assert saved["evidence"]["score"] == [0.5, None]
    back = Hierarchy.from_dict(json.loads(text))
    assert back == tree
    for key, value in tree.evidence.items():
        assert back.evidence[key].dtype == value.dtype
        torch.testing.assert_close(back.evidence[key], value, equal_nan=True)
    assert "evidence" not in Hierarchy.from_merges([[0, 1]], 2).to_dict()


def test_equality_is_structural_and_ignores_evidence():
    tree, _ = evidence_tree()
    assert tree == Hierarchy.from_merges([[0, 1], [3, 2]], 3)


def test_to_text_shows_the_evidence_of_each_merge():
    tree, _ = evidence_tree()
    assert tree.to_text(["cat", "dog", "car"]).splitlines() == [
        "3 classes (node 4, partner 0.25, no runner-up, 12.5 points, height 2)",
        "  2 classes (node 3, score 0.5, partner 0.9, runner-up car 0.1, 40 points, height 1)",
        "    cat",
        "    dog",
        "  car",
    ]
    internal = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], 4, evidence={"runner_up": [2, 4, 5], "extra": [1.0, 2.0, 3.0]})
    assert "runner-up node 5, extra 3" in internal.to_text().splitlines()[0]


# ------------------------------------------------------------------------------------------------ deep trees

K_CHAIN = 10_000  # depth 9,999: anything recursive on depth fails long before


def chain(k):
    """The tree L2H gives when one class wins every row: ((((0, 1), 2), 3), ...)."""
    return Hierarchy.from_merges([[0, 1]] + [[k + i - 1, i + 1] for i in range(1, k - 1)], num_leaves=k)


@pytest.fixture(scope="module")
def deep():
    return chain(K_CHAIN)


def test_chain_newick_round_trip(deep):
    text = deep.to_newick()
    assert text.startswith("(" * (K_CHAIN - 1) + "0:1,1:1):1,2:2):1") and text.endswith(f",{K_CHAIN - 1}:{K_CHAIN - 1});")
    assert Hierarchy.from_newick(text) == deep
    names = [f"class {i}" for i in range(K_CHAIN)]
    assert Hierarchy.from_newick(deep.to_newick(names), names) == deep


def test_chain_text_outline_is_bounded(deep):
    lines = deep.to_text().splitlines()
    assert len(lines) == 2 * K_CHAIN - 1
    assert lines[0] == f"{K_CHAIN} classes (height {K_CHAIN - 1})"
    assert lines[K_CHAIN - 1 : K_CHAIN + 1] == ["  " * 32 + f"[depth {K_CHAIN - 1}] {leaf}" for leaf in (0, 1)]
    assert lines[-1] == f"  {K_CHAIN - 1}"
    assert max(len(line) - len(line.lstrip(" ")) for line in lines) == 64


def test_chain_leaves_sizes_spans_and_parents(deep):
    K = K_CHAIN
    assert deep.leaves(deep.root) == list(range(K))
    assert deep.leaves(K + 2) == [0, 1, 2, 3]
    assert deep.sizes()[K:] == list(range(2, K + 1))
    order, start, end = deep.spans()
    assert order.tolist() == list(range(K))
    assert start[K:].eq(0).all() and end[K:].tolist() == list(range(2, K + 1))
    assert deep.parents[:K].tolist() == [K, K] + list(range(K + 1, 2 * K - 1))
    assert deep.merges.shape == (K - 1, 2) and deep.merges[-1].tolist() == [2 * K - 3, K - 1]


def test_chain_cut(deep):
    K = K_CHAIN
    assert deep.cut(3).tolist() == [0] * (K - 2) + [1, 2]
    assert deep.cut(K).tolist() == list(range(K))
    assert deep.cut(1).eq(0).all()
    assert same_partition(deep.cut(17), sch.fcluster(deep.to_linkage(), 17, "maxclust"))


def test_chain_linkage_round_trip(deep):
    Z = deep.to_linkage()
    assert sch.is_valid_linkage(Z) and sch.is_monotonic(Z)
    assert Hierarchy.from_linkage(Z) == deep


def test_chain_from_parents(deep):
    back = Hierarchy.from_parents(deep.parents.tolist())
    assert back.heights == deep.heights  # 1 + the largest child height is the merge step on a chain
    assert [sorted(ch) for ch in back.children] == [sorted(ch) for ch in deep.children]


def test_chain_dict_round_trip_and_repr(deep):
    with_evidence = Hierarchy.from_merges(deep.merges, K_CHAIN, evidence={"points": torch.arange(K_CHAIN - 1.0)})
    back = Hierarchy.from_dict(json.loads(json.dumps(with_evidence.to_dict())))
    assert back == deep and torch.equal(back.evidence["points"], with_evidence.evidence["points"])
    assert repr(deep) == f"Hierarchy(num_leaves={K_CHAIN}, binary, '" + "(" * 77 + "...')"


def test_chain_rho_in_closed_form():
    # K = 2,000 here: rho of the 10,000 chain is a 10,000 x 10,000 float64 matrix (800 MB)
    k = 2000
    rho = chain(k).rho()
    i = torch.arange(k, dtype=torch.float64)
    expected = torch.maximum(i[:, None], i[None, :]) / (k - 1)  # LCA(i, j) of a chain holds leaves 0..max(i, j)
    expected.fill_diagonal_(0)
    assert torch.equal(rho, expected)


def test_deep_multifurcating_tree_round_trips_and_matches_the_reference():
    def ternary_chain(depth):  # (((0, 1, 2), 3, 4), 5, 6) ...: every internal node has three children
        k = 2 * depth + 1
        return Hierarchy(k, [[0, 1, 2]] + [[k + i - 1, 2 * i + 1, 2 * i + 2] for i in range(1, depth)])

    deep3 = ternary_chain(5000)
    assert Hierarchy.from_newick(deep3.to_newick()) == deep3
    assert Hierarchy.from_dict(deep3.to_dict()) == deep3
    small = ternary_chain(12)
    np.testing.assert_array_equal(small.rho().numpy(), reference_rho(small.num_leaves, small.children))


def test_from_levels_at_k_10000_and_coarse_groups():
    K = K_CHAIN
    fine, coarse = [i // 10 for i in range(K)], [i // 1000 for i in range(K)]
    tree = Hierarchy.from_levels([fine, coarse])
    assert tree.num_leaves == K and len(tree.children) == 1000 + 10 + 1
    assert tree.coarse_groups() == coarse
    assert tree.leaves(K) == list(range(10)) and sorted(tree.children[-1]) == list(range(K + 1000, K + 1010))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rho_of_binary_and_multifurcating_trees_matches_the_reference(seed):
    binary = tree_from_logits(k=13, seed=seed)
    np.testing.assert_array_equal(binary.rho().numpy(), reference_rho(13, binary.children))
    leaf_parents = np.random.default_rng(seed).permutation([13, 13, 13, 14, 14, 15, 15, 15, 15, 16, 16, 16, 16]).tolist()
    multi = Hierarchy.from_parents(leaf_parents + [17, 17, 17, 17, -1])  # nodes 13..16 under the root 17
    assert not multi.is_binary
    np.testing.assert_array_equal(multi.rho().numpy(), reference_rho(13, multi.children))


def test_non_ultrametric_newick_takes_the_largest_child_height():
    tree = Hierarchy.from_newick("(2:0.5,(0:1,1:1):0.1);")
    assert tree.children == [(0, 1), (2, 3)] and tree.heights == [1.0, 1.1]


def test_evidence_of_a_learned_tree_survives_strict_json_and_shows_in_text():
    tree = tree_from_logits(k=6, n=200)
    assert set(tree.evidence) == {"score", "partner_value", "runner_up", "runner_up_value", "points", "mass"}
    assert tree.evidence["runner_up"].dtype == torch.int64
    assert tree.evidence["runner_up"][-1] == -1  # the last merge has no other partner
    back = Hierarchy.from_dict(json.loads(json.dumps(tree.to_dict(), allow_nan=False)))
    for key, value in tree.evidence.items():
        assert back.evidence[key].dtype == value.dtype
        torch.testing.assert_close(back.evidence[key], value, equal_nan=True, rtol=0, atol=0)
    lines = [line for line in tree.to_text().splitlines() if "classes" in line]
    assert len(lines) == 5 and all("partner" in line and "points" in line for line in lines)
    assert lines[0].startswith("6 classes (node 10, score ") and "no runner-up" in lines[0]
