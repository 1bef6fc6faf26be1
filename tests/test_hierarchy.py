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
