"""Every bad input to the engine, `Hierarchy` and the metrics: refused with the right exception and a message that
names the argument and the problem. One row per case: (id, callable, phrase of the message[, exception type]); the
exception type is ValueError unless a row names another, and it must be exactly that type (not a subclass)."""

import json
import math
import re

import numpy as np
import pytest
import torch

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

pytestmark = pytest.mark.filterwarnings("ignore:The ``compute`` method of metric:UserWarning")  # torchmetrics' own

TREE = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], num_leaves=4)  # ((0,1),(2,3))
TRUTH = Hierarchy.from_levels([[0, 0, 1, 1]])
MULTI = Hierarchy.from_levels([[0, 0, 0, 1]])  # (0, 1, 2) joined in one node
PREDS, TARGET = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([0, 1, 2, 3, 3])
NAN = float("nan")
SAVED = TREE.to_dict()
LINKAGE = TREE.to_linkage()


def linkage_with(row, col, value):
    Z = LINKAGE.copy()
    Z[row, col] = value
    return Z


def saved_with(**changes):
    data = json.loads(json.dumps(SAVED))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


def updated_then_computed(metric, *batches):
    for preds, target in batches:
        metric.update(preds, target)
    return metric.compute()


def tree_mode_batch(n=6, k=4):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(0)), torch.arange(n) % k


CASES = [
    # ---------------------------------------------------------------- engine (l2h)
    ("l2h-1d", lambda: l2h(torch.randn(5)), "logits must be 2-D"),
    ("l2h-3d", lambda: l2h(torch.randn(2, 2, 2)), "logits must be 2-D"),
    ("l2h-no-rows", lambda: l2h(torch.randn(0, 3)), "no rows (N = 0)"),
    ("l2h-no-columns", lambda: l2h(torch.randn(3, 0)), "no columns (K = 0)"),
    ("l2h-integer-dtype", lambda: l2h(torch.ones(3, 3, dtype=torch.long)), "floating-point tensor, got dtype torch.int64"),
    ("l2h-bool-dtype", lambda: l2h(torch.ones(3, 3, dtype=torch.bool)), "floating-point tensor"),
    ("l2h-complex-dtype", lambda: l2h(torch.ones(3, 3, dtype=torch.cfloat)), "floating-point tensor"),
    ("l2h-nan-rows", lambda: l2h(torch.tensor([[0.0, NAN], [1, 2], [NAN, 1]])), "NaN or infinite entries in 2 of its 3 rows"),
    ("l2h-inf-row", lambda: l2h(torch.tensor([[0.0, math.inf], [1, 2]])), "NaN or infinite entries in 1 of its 2 rows"),
    ("l2h-aggregation", lambda: l2h(torch.randn(4, 3), "max"), "aggregation must be one of"),
    # ---------------------------------------------------------------- Hierarchy constructor
    ("num_leaves-fraction", lambda: Hierarchy(2.7, [[0, 1]]), "num_leaves must be an integer, got 2.7"),
    ("num_leaves-string", lambda: Hierarchy("3", [[0, 1], [3, 2]]), "num_leaves must be an integer"),
    ("num_leaves-bool", lambda: Hierarchy(True, []), "num_leaves must be an integer"),
    ("num_leaves-zero", lambda: Hierarchy(0, []), "num_leaves must be at least 1"),
    ("children-fraction", lambda: Hierarchy(3, [[0, 1.5], [3, 2]]), "children[0] entries must be an integer, got 1.5"),
    ("children-not-lists", lambda: Hierarchy(3, [0, 1]), "children[0] must be a list of node ids"),
    ("children-string", lambda: Hierarchy(3, "01"), "children must be a list of child lists"),
    ("children-float-array", lambda: Hierarchy(3, np.array([[0, 1.5], [3, 2]])), "children must hold integer ids, got fractional"),
    ("children-one-child", lambda: Hierarchy(2, [[0]]), "needs at least 2"),
    ("children-future-node", lambda: Hierarchy(3, [[0, 4], [3, 2]]), "children must be existing nodes < 3"),
    ("children-negative", lambda: Hierarchy(3, [[-1, 0], [3, 2]]), "internal node 3 has child -1"),
    ("children-two-parents", lambda: Hierarchy(3, [[0, 1], [1, 2]]), "node 1 has more than one parent"),
    ("children-disconnected", lambda: Hierarchy(4, [[0, 1], [2, 3]]), "not connected"),
    ("heights-wrong-length", lambda: Hierarchy(3, [[0, 1], [3, 2]], heights=[1.0]), "heights has 1 entries for 2 internal nodes"),
    ("heights-nan", lambda: Hierarchy(3, [[0, 1], [3, 2]], heights=[1.0, NAN]), "heights must be finite"),
    ("heights-inf", lambda: Hierarchy(3, [[0, 1], [3, 2]], heights=[1.0, math.inf]), "heights must be finite"),
    ("heights-negative", lambda: Hierarchy(3, [[0, 1], [3, 2]], heights=[-1.0, 2.0]), "heights must not be negative"),
    ("heights-decreasing", lambda: Hierarchy(3, [[0, 1], [3, 2]], heights=[2.0, 1.0]), "heights must not decrease"),
    ("heights-strings", lambda: Hierarchy(3, [[0, 1], [3, 2]], heights=["a", "b"]), "heights must be real numbers"),
    ("levels-wrong-length", lambda: Hierarchy(3, [[0, 1], [3, 2]], levels=[[0, 0]]), "levels[0] has 2 entries for 3 leaves"),
    ("evidence-not-dict", lambda: Hierarchy(3, [[0, 1], [3, 2]], evidence=[1, 2]), "evidence must be a dict"),
    ("evidence-wrong-length", lambda: Hierarchy(3, [[0, 1], [3, 2]], evidence={"points": [1.0]}), "one value per internal node (2)"),
    ("evidence-2d", lambda: Hierarchy(3, [[0, 1], [3, 2]], evidence={"points": [[1.0, 2.0]]}), "must be 1-D"),
    ("evidence-key", lambda: Hierarchy(3, [[0, 1], [3, 2]], evidence={1: [1.0, 2.0]}), "evidence names must be strings"),
    ("evidence-text", lambda: Hierarchy(3, [[0, 1], [3, 2]], evidence={"points": ["a", "b"]}), "must be real numbers"),
    ("evidence-runner-up-fraction", lambda: Hierarchy.from_merges([[0, 1], [3, 2]], 3, evidence={"runner_up": [2, 0.5]}), "integer ids"),
    ("evidence-runner-up-later-node", lambda: Hierarchy.from_merges([[0, 1], [3, 2]], 3, evidence={"runner_up": [3, -1]}), "no node that existed at merge 0"),
    # ---------------------------------------------------------------- from_merges
    ("merges-3-columns", lambda: Hierarchy.from_merges([[0, 1, 2], [3, 2, 1]], 3), "merges must have shape (K-1, 2)"),
    ("merges-1d", lambda: Hierarchy.from_merges([0, 1, 3, 2], 3), "merges must have shape (K-1, 2)"),
    ("merges-count", lambda: Hierarchy.from_merges([[0, 1]], 3), "over 3 leaves has 2 merges, got 1"),
    ("merges-fraction", lambda: Hierarchy.from_merges(torch.tensor([[0.0, 1.5], [3, 2]]), 3), "merges must hold integer ids, got fractional"),
    ("merges-nan", lambda: Hierarchy.from_merges([[0.0, NAN], [3, 2]], 3), "merges must hold integer ids, got 1 NaN"),
    ("merges-text", lambda: Hierarchy.from_merges([["a", "b"]], 2), "merges must hold integer ids, got dtype <U1"),
    ("merges-num_leaves-fraction", lambda: Hierarchy.from_merges([[0, 1]], 2.0), "num_leaves must be an integer"),
    # ---------------------------------------------------------------- from_linkage
    ("linkage-shape", lambda: Hierarchy.from_linkage(np.zeros((2, 3))), "Z: a linkage matrix has shape (K-1, 4)"),
    ("linkage-fractional-id", lambda: Hierarchy.from_linkage(linkage_with(0, 1, 1.5)), "node ids) must hold integer ids, got fractional"),
    ("linkage-nan-id", lambda: Hierarchy.from_linkage(linkage_with(0, 0, NAN)), "node ids) must hold integer ids, got 1 NaN"),
    ("linkage-nan-height", lambda: Hierarchy.from_linkage(linkage_with(1, 2, NAN)), "Z[:, 2] (heights) must be finite"),
    ("linkage-negative-height", lambda: Hierarchy.from_linkage(linkage_with(0, 2, -1.0)), "Z[:, 2] (heights) must not be negative"),
    ("linkage-decreasing-height", lambda: Hierarchy.from_linkage(linkage_with(2, 2, 0.5)), "Z[:, 2] (heights) must not decrease"),
    ("linkage-wrong-count", lambda: Hierarchy.from_linkage(linkage_with(2, 3, 3.0)), "Z[:, 3] (leaf counts): row 2 says 3 leaves"),
    ("linkage-text", lambda: Hierarchy.from_linkage([["a", "b", "c", "d"]]), "Z must be real numbers"),
    # ---------------------------------------------------------------- from_levels
    ("levels-fraction", lambda: Hierarchy.from_levels([[0, 0.5, 1, 1]]), "maps[0] must hold integer ids, got fractional"),
    ("levels-nan", lambda: Hierarchy.from_levels([[0, NAN, 1, 1]]), "maps[0] must hold integer ids, got 1 NaN"),
    ("levels-2d-map", lambda: Hierarchy.from_levels([[[0, 0], [1, 1]]]), "maps[0] must be 1-D"),
    ("levels-empty", lambda: Hierarchy.from_levels([]), "at least one label map"),
    ("levels-empty-map", lambda: Hierarchy.from_levels([[]]), "maps[0] is empty"),
    ("levels-negative", lambda: Hierarchy.from_levels([[0, -1, 1]]), "maps[0] has negative group ids"),
    ("levels-not-nested", lambda: Hierarchy.from_levels([[0, 0, 1, 1], [0, 1, 1, 1]]), "do not nest"),
    ("levels-lengths-differ", lambda: Hierarchy.from_levels([[0, 0, 1, 1], [0, 0, 1]]), "maps[1] has 3 entries for 4 leaves"),
    ("levels-ragged", lambda: Hierarchy.from_levels([[0, [0, 1], 1]]), "maps[0] must be a rectangular array"),
    ("levels-a-string", lambda: Hierarchy.from_levels("0011"), "maps must be a list of label maps"),
    # ---------------------------------------------------------------- from_parents
    ("parents-cycle", lambda: Hierarchy.from_parents([1, 0, -1]), "parents contains a cycle"),
    ("parents-cycle-with-leaves", lambda: Hierarchy.from_parents([3, 3, 4, 4, 3, -1]), "parents contains a cycle"),
    ("parents-self-loop", lambda: Hierarchy.from_parents([2, 2, 2, -1]), "parents contains a cycle"),
    ("parents-two-roots", lambda: Hierarchy.from_parents([2, 2, -1, -1]), "exactly one root (-1), got 2"),
    ("parents-no-root", lambda: Hierarchy.from_parents([2, 2, 2]), "exactly one root (-1), got 0"),
    ("parents-out-of-range", lambda: Hierarchy.from_parents([3, 7, 3, -1]), "node 1 has parent 7"),
    ("parents-below-minus-one", lambda: Hierarchy.from_parents([2, -2, -1]), "node 1 has parent -2"),
    ("parents-fraction", lambda: Hierarchy.from_parents([2.5, 2, -1]), "parents must hold integer ids, got fractional"),
    ("parents-2d", lambda: Hierarchy.from_parents([[2, 2, -1]]), "parents must be 1-D"),
    ("parents-empty", lambda: Hierarchy.from_parents([]), "parents is empty"),
    ("parents-leaf-numbering", lambda: Hierarchy.from_parents([-1, 0, 0]), "leaves (nodes without children) must be nodes 0..1"),
    ("parents-one-child", lambda: Hierarchy.from_parents([3, 3, 4, 5, 5, -1]), "at least 2"),
    # ---------------------------------------------------------------- from_newick
    ("newick-unbalanced", lambda: Hierarchy.from_newick("((0,1),2"), "ends early"),
    ("newick-no-semicolon", lambda: Hierarchy.from_newick("((0,1),2)"), "ends early"),
    ("newick-trailing-text", lambda: Hierarchy.from_newick("((0,1),2);x"), "trailing text after ';'"),
    ("newick-trailing-paren", lambda: Hierarchy.from_newick("((0,1),2));"), "expected ';' after the root"),
    ("newick-several-trees", lambda: Hierarchy.from_newick("(0,1);(0,1);"), "several trees"),
    ("newick-inf-length", lambda: Hierarchy.from_newick("((0:inf,1:1):1,2:2);"), "branch length 'inf' must be finite and non-negative"),
    ("newick-nan-length", lambda: Hierarchy.from_newick("((0:nan,1:1):1,2:2);"), "branch length 'nan' must be finite"),
    ("newick-negative-length", lambda: Hierarchy.from_newick("((0:-1,1:1):1,2:2);"), "branch length '-1' must be finite and non-negative"),
    ("newick-text-length", lambda: Hierarchy.from_newick("((0:a,1:1):1,2:2);"), "branch length 'a' is not a number"),
    ("newick-empty", lambda: Hierarchy.from_newick("  "), "the text is empty"),
    ("newick-empty-label", lambda: Hierarchy.from_newick("(,1);"), "expected a leaf label"),
    ("newick-named-leaf-without-names", lambda: Hierarchy.from_newick("(a,b);"), "pass names="),
    ("newick-fractional-leaf", lambda: Hierarchy.from_newick("(0,1.5);"), "leaf label '1.5' is not a leaf id"),
    ("newick-unknown-name", lambda: Hierarchy.from_newick("(a,b);", names=["a", "c"]), "leaf 'b' is not in names"),
    ("newick-duplicate-names", lambda: Hierarchy.from_newick("(a,b);", names=["a", "a"]), "names must be unique"),
    ("newick-repeated-leaf", lambda: Hierarchy.from_newick("(0,0);"), "the Newick leaves must be 0..1, each once"),
    ("newick-unclosed-quote", lambda: Hierarchy.from_newick("('a,b);", names=["a", "b"]), "unclosed quote"),
    ("newick-unclosed-comment", lambda: Hierarchy.from_newick("((0,1)[note,2);"), "unclosed comment"),
    ("newick-missing-comma", lambda: Hierarchy.from_newick("((0,1)(2,3));"), "expected ',' or ')'"),
    ("from-newick-names-string", lambda: Hierarchy.from_newick("(a,b);", names="ab"), "names must be a list of leaf names, got a string"),
    ("newick-not-a-string", lambda: Hierarchy.from_newick(b"(0,1);"), "text must be a Newick string"),
    # ---------------------------------------------------------------- from_dict
    ("dict-not-a-dict", lambda: Hierarchy.from_dict([1, 2]), "data must be a dict"),
    ("dict-format", lambda: Hierarchy.from_dict({"num_leaves": 3}), "not a saved Hierarchy"),
    ("dict-missing-children", lambda: Hierarchy.from_dict(saved_with(children=None)), "missing key(s) ['children']"),
    ("dict-missing-version", lambda: Hierarchy.from_dict(saved_with(version=None)), "missing key(s) ['version']"),
    ("dict-unknown-version", lambda: Hierarchy.from_dict(saved_with(version=2)), "version 2 is not supported"),
    ("dict-levels-length", lambda: Hierarchy.from_dict(saved_with(levels=[[0, 0, 1]])), "levels[0] has 3 entries for 4 leaves"),
    ("dict-levels-fraction", lambda: Hierarchy.from_dict(saved_with(levels=[[0, 0, 1, 1.5]])), "levels[0] must hold integer ids"),
    ("dict-num_leaves-text", lambda: Hierarchy.from_dict(saved_with(num_leaves="4")), "num_leaves must be an integer"),
    ("dict-children-tampered", lambda: Hierarchy.from_dict(saved_with(children=[[0, 1], [2, 3], [4, 4]])), "more than one parent"),
    ("dict-heights-tampered", lambda: Hierarchy.from_dict(saved_with(heights=[1, 2])), "heights has 2 entries for 3"),
    ("dict-evidence-length", lambda: Hierarchy.from_dict(saved_with(evidence={"points": [1.0]})), "one value per internal node (3)"),
    ("dict-children-string", lambda: Hierarchy.from_dict(saved_with(children="[[0, 1]]")), "children must be a list of child lists"),
    ("dict-evidence-scalar", lambda: Hierarchy.from_dict(saved_with(evidence={"points": 3.0})), "must be 1-D with one value per internal node"),
    ("dict-evidence-not-dict", lambda: Hierarchy.from_dict(saved_with(evidence=[1.0])), "data['evidence'] must be a dict"),
    ("dict-evidence-runner-up-none", lambda: Hierarchy.from_dict(saved_with(evidence={"runner_up": [None, 0, 1]})), "evidence['runner_up'] must hold integer ids"),
    # ---------------------------------------------------------------- Hierarchy methods
    ("leaves-fraction", lambda: TREE.leaves(2.5), "node must be an integer, got 2.5"),
    ("leaves-out-of-range", lambda: TREE.leaves(7), "node must be in 0..6, got 7"),
    ("cut-fraction", lambda: TREE.cut(2.5), "n_groups must be an integer, got 2.5"),
    ("cut-bool", lambda: TREE.cut(True), "n_groups must be an integer, got True"),
    ("cut-zero", lambda: TREE.cut(0), "n_groups must be in 1..4, got 0"),
    ("cut-too-many", lambda: TREE.cut(5), "n_groups must be in 1..4, got 5"),
    ("cut-multifurcating", lambda: MULTI.cut(2), "cut needs a binary tree"),
    ("linkage-multifurcating", lambda: MULTI.to_linkage(), "to_linkage needs a binary tree"),
    ("newick-names-length", lambda: TREE.to_newick(["a", "b"]), "names has 2 entries for 4 leaves"),
    ("newick-names-string", lambda: TREE.to_newick("abcd"), "names must be a list of leaf names, got a string"),
    ("text-names-number", lambda: TREE.to_text(5), "names must be a list of leaf names, got int"),
    ("text-names-length", lambda: TREE.to_text(["a"]), "names has 1 entries for 4 leaves"),
    # ---------------------------------------------------------------- functional metrics
    ("dp-nan-logits", lambda: dendrogram_purity(TREE, torch.tensor([[0.0, NAN, 1, 2], [1, 2, 3, 4]]), torch.tensor([0, 1])), "preds are logits with NaN entries in 1 of 2 row(s)"),
    ("lhd-nan-logits", lambda: lca_height_distance(TREE, torch.full((3, 4), NAN), torch.tensor([0, 1, 1])), "NaN entries in 3 of 3"),
    ("dp-nan-counts", lambda: dendrogram_purity(TREE, counts=torch.tensor([[1.0, NAN], [1, 1], [0, 2], [3, 0]])), "counts must be finite, got 1 NaN"),
    ("dp-inf-counts", lambda: dendrogram_purity(TREE, counts=torch.tensor([[1.0, math.inf], [1, 1], [0, 2], [3, 0]])), "counts must be finite"),
    ("dp-negative-counts", lambda: dendrogram_purity(TREE, counts=torch.tensor([[1, -2], [1, 1], [0, 2], [3, 0]])), "counts must not be negative, got 1 negative"),
    ("lhd-negative-counts", lambda: lca_height_distance(TREE, counts=-torch.ones(4, 2)), "counts must not be negative"),
    ("dp-empty-counts", lambda: dendrogram_purity(TREE, counts=torch.zeros(4, 2)), "counts hold no points"),
    ("lhd-empty-counts", lambda: lca_height_distance(TREE, counts=torch.zeros(4, 2)), "counts hold no points"),
    ("dp-no-points", lambda: dendrogram_purity(TREE, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)), "counts hold no points"),
    ("dp-fractional-counts", lambda: dendrogram_purity(TREE, counts=torch.tensor([[1.5, 0], [2.5, 0], [0, 1.5], [0, 0.5]])), "counts must be whole numbers of points, got fractional entries (e.g. 1.5)"),
    ("leaf-purity-fractional-counts", lambda: leaf_purity(counts=torch.tensor([[0.5, 1.0]])), "counts must be whole numbers"),
    ("dp-complex-counts", lambda: dendrogram_purity(TREE, counts=torch.ones(4, 2, dtype=torch.cfloat)), "counts must hold real numbers"),
    ("dp-counts-shape", lambda: dendrogram_purity(TREE, counts=torch.ones(3, 2)), "counts must be a (4, C) table"),
    ("dp-counts-and-preds", lambda: dendrogram_purity(TREE, PREDS, TARGET, counts=torch.ones(4, 4)), "not both"),
    ("dp-nothing", lambda: dendrogram_purity(TREE), "pass preds and target, or counts="),
    ("dp-hierarchy-not-a-tree", lambda: dendrogram_purity("x", PREDS, TARGET), "hierarchy must be a Hierarchy, got str"),
    ("lhd-target-hierarchy-list", lambda: lca_height_distance(TREE, PREDS, TARGET, [0, 1]), "target_hierarchy must be a Hierarchy or None, got list"),
    ("lhd-counts-classes", lambda: lca_height_distance(TREE, target_hierarchy=TRUTH, counts=torch.ones(4, 3)), "counts has 3 classes, the target hierarchy has 4"),
    ("dp-float-target", lambda: dendrogram_purity(TREE, PREDS, TARGET + 0.7), "target must hold integer ids"),
    ("dp-float-preds", lambda: dendrogram_purity(TREE, PREDS.double(), TARGET), "preds must hold integer ids"),
    ("dp-preds-too-large", lambda: dendrogram_purity(TREE, torch.tensor([0, 4]), torch.tensor([0, 0])), "preds has ids outside 0..3"),
    ("dp-preds-negative", lambda: dendrogram_purity(TREE, torch.tensor([0, -1]), torch.tensor([0, 0])), "preds has ids outside 0..3 (min -1"),
    ("dp-target-negative", lambda: dendrogram_purity(TREE, torch.tensor([0, 1]), torch.tensor([0, -1])), "target has ids outside"),
    ("lhd-target-too-large", lambda: lca_height_distance(TREE, PREDS, torch.full_like(PREDS, 4), TRUTH), "target has ids outside 0..3"),
    ("dp-lengths", lambda: dendrogram_purity(TREE, PREDS, TARGET[:3]), "preds has 5 points but target has 3"),
    ("dp-logits-width", lambda: dendrogram_purity(TREE, torch.randn(5, 3), TARGET), "logits over 3 clusters, but the tree has 4 leaves"),
    ("dp-preds-3d", lambda: dendrogram_purity(TREE, torch.randn(5, 4, 1), TARGET), "preds must be cluster ids (N,) or logits (N, K)"),
    ("dp-target-2d", lambda: dendrogram_purity(TREE, PREDS, TARGET[:, None]), "target class ids (N,)"),
    ("dp-preds-text", lambda: dendrogram_purity(TREE, ["a", "b"], TARGET[:2]), "preds must be a tensor (or array) of numbers"),
    ("leaf-purity-nan-counts", lambda: leaf_purity(counts=torch.tensor([[NAN, 1.0]])), "counts must be finite"),
    ("leaf-purity-no-points", lambda: leaf_purity(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)), "counts hold no points"),
    ("leaf-purity-1d-counts", lambda: leaf_purity(counts=torch.ones(3)), "counts must be a 2-D (clusters, classes) table"),
    ("leaf-purity-nan-logits", lambda: leaf_purity(torch.full((2, 3), NAN), torch.tensor([0, 1])), "NaN entries in 2 of 2"),
    ("level-scores-no-data", lambda: level_scores(TREE, target_hierarchy=TRUTH, counts=torch.zeros(4, 4)), "counts hold no points"),
    ("level-scores-no-points", lambda: level_scores(TREE, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), TRUTH), "counts hold no points"),
    ("level-scores-no-truth", lambda: level_scores(TREE, PREDS, TARGET), "needs target_hierarchy"),
    ("level-scores-truth-not-a-tree", lambda: level_scores(TREE, PREDS, TARGET, "x"), "target_hierarchy must be a Hierarchy"),
    ("level-scores-truth-without-levels", lambda: level_scores(TREE, PREDS, TARGET, TREE), "has no levels"),
    ("level-scores-multifurcating", lambda: level_scores(MULTI, PREDS, TARGET, TRUTH), "cut needs a binary tree"),
    ("scores-no-points", lambda: hierarchy_scores(TREE, counts=torch.zeros(4, 2)), "counts hold no points"),
    ("tree-distance-leaves", lambda: tree_distance(TREE, Hierarchy(3, [[0, 1, 2]])), "different leaves: 4 and 3"),
    ("tree-distance-not-a-tree", lambda: tree_distance(TREE, "x"), "b must be a Hierarchy, got str"),
    ("contingency-num-classes-fraction", lambda: contingency_table(PREDS, TARGET, 4, 2.5), "num_classes must be an integer"),
    ("contingency-num-clusters-zero", lambda: contingency_table(PREDS, TARGET, 0, 4), "must be positive"),
    ("contingency-complex-logits", lambda: contingency_table(torch.ones(2, 4, dtype=torch.cfloat), TARGET[:2], 4, 4), "preds must be real logits"),
    # ---------------------------------------------------------------- metric modules
    ("module-hierarchy-string", lambda: DendrogramPurity(hierarchy="x"), "hierarchy must be a Hierarchy or None, got str"),
    ("module-target-hierarchy-list", lambda: LCAHeightDistance(target_hierarchy=[0, 1]), "target_hierarchy must be a Hierarchy or None, got list"),
    ("module-store-dtype-string", lambda: DendrogramPurity(store_dtype="float16"), "store_dtype must be a floating-point torch.dtype"),
    ("module-store-dtype-int", lambda: DendrogramPurity(store_dtype=torch.int32), "store_dtype must be a floating-point torch.dtype"),
    ("module-aggregation", lambda: DendrogramPurity(aggregation="max"), "aggregation must be one of"),
    ("module-aggregation-list", lambda: DendrogramPurity(aggregation=["sum"]), "aggregation must be one of"),
    ("module-max-samples-zero", lambda: DendrogramPurity(max_samples=0), "max_samples must be a positive int"),
    ("module-max-samples-bool", lambda: DendrogramPurity(max_samples=True), "max_samples must be a positive int"),
    ("module-max-samples-float", lambda: DendrogramPurity(max_samples=10.0), "max_samples must be a positive int"),
    ("module-num-classes-fraction", lambda: HierarchyMetrics(num_classes=2.5), "num_classes must be an integer, got 2.5"),
    ("module-num-classes-zero", lambda: HierarchyMetrics(num_classes=0), "num_classes must be positive"),
    ("module-num-classes-vs-truth", lambda: DendrogramPurity(num_classes=3, target_hierarchy=TRUTH), "num_classes=3 but target_hierarchy has 4"),
    ("leaf-purity-module-fraction", lambda: LeafPurity(2.5, 3), "num_clusters must be an integer, got 2.5"),
    ("leaf-purity-module-zero", lambda: LeafPurity(0, 3), "must be positive"),
    ("leaf-purity-module-no-points", lambda: LeafPurity(3, 3).compute(), "no points to score"),
    ("module-zero-rows-then-compute", lambda: updated_then_computed(DendrogramPurity(), (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))), "every update(logits, target) so far had zero rows"),
    ("module-compute-without-update", lambda: HierarchyMetrics().compute(), "call update(logits, target) before compute()"),
    ("module-fixed-no-points", lambda: updated_then_computed(DendrogramPurity(hierarchy=TREE), (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))), "no points to score"),
    ("module-float-target-fraction", lambda: DendrogramPurity().update(tree_mode_batch()[0], tree_mode_batch()[1] + 0.7), "target must hold integer class ids, got dtype torch.float32"),
    ("module-float-target-integral", lambda: HierarchyMetrics().update(tree_mode_batch()[0], tree_mode_batch()[1].float()), "target must hold integer class ids"),
    ("module-fixed-float-target", lambda: DendrogramPurity(hierarchy=TREE).update(PREDS, TARGET + 0.7), "target must hold integer ids"),
    ("module-negative-target", lambda: DendrogramPurity().update(tree_mode_batch()[0], -tree_mode_batch()[1] - 1), "target has negative class ids (min -4)"),
    ("module-target-beyond-num-classes", lambda: HierarchyMetrics(target_hierarchy=TRUTH).update(tree_mode_batch()[0], torch.full((6,), 4)), "target has class ids outside 0..3"),
    ("module-fixed-target-beyond", lambda: DendrogramPurity(hierarchy=TREE, num_classes=2).update(PREDS, TARGET), "target has ids outside 0..1"),
    ("module-nan-logits", lambda: DendrogramPurity().update(torch.tensor([[0.0, NAN], [1.0, 2.0]]), torch.tensor([0, 1])), "NaN or infinite entries in 1 of 2 row(s)"),
    ("module-fixed-nan-logits", lambda: DendrogramPurity(hierarchy=TREE).update(torch.full((2, 4), NAN), torch.tensor([0, 1])), "NaN entries in 2 of 2"),
    ("module-store-dtype-overflow", lambda: DendrogramPurity(store_dtype=torch.float16).update(torch.tensor([[1e5, 0.0], [1.0, 2.0]]), torch.tensor([0, 1])), "exceed the range of store_dtype=torch.float16"),
    ("module-integer-logits", lambda: DendrogramPurity().update(torch.tensor([[1, 0], [0, 1]]), torch.tensor([0, 1])), "update needs logits (N, K) of a floating dtype"),
    ("module-no-columns", lambda: DendrogramPurity().update(torch.zeros(3, 0), torch.tensor([0, 1, 2])), "the logits have no columns"),
    ("module-target-length", lambda: DendrogramPurity().update(torch.randn(4, 3), torch.tensor([0, 1])), "target must be class ids (N,) for the 4 rows"),
    ("module-clusters-change", lambda: updated_then_computed(DendrogramPurity(), tree_mode_batch(k=4), tree_mode_batch(k=5)), "number of clusters changed between batches: 4 before, 5 now"),
]

NONE_CASES = [  # None where a value is needed: a ValueError naming the argument, not an error from inside
    ("none-children", lambda: Hierarchy(3, None), "children must be a list of child lists, got NoneType"),
    ("none-merges", lambda: Hierarchy.from_merges(None, 3), "merges must hold integer ids"),
    ("none-linkage", lambda: Hierarchy.from_linkage(None), "Z must be real numbers"),
    ("none-levels", lambda: Hierarchy.from_levels(None), "maps must be a list of label maps"),
    ("none-parents", lambda: Hierarchy.from_parents(None), "parents must hold integer ids"),
    ("none-newick", lambda: Hierarchy.from_newick(None), "text must be a Newick string"),
    ("none-dict", lambda: Hierarchy.from_dict(None), "data must be a dict"),
    ("none-node", lambda: TREE.leaves(None), "node must be an integer"),
    ("none-evidence-values", lambda: Hierarchy(3, [[0, 1], [3, 2]], evidence={"points": None}), "evidence['points'] must be real numbers"),
    ("none-preds", lambda: dendrogram_purity(TREE, None, TARGET), "pass preds and target, or counts="),
    ("none-module-preds", lambda: DendrogramPurity().update(None, None), "preds must be a tensor (or array) of numbers"),
    ("none-fixed-module-preds", lambda: DendrogramPurity(hierarchy=TREE).update(None, TARGET), "preds must be a tensor (or array) of numbers"),
]
CASES += NONE_CASES


ROWS = [(c[1], c[3] if len(c) > 3 else ValueError, c[2]) for c in CASES]


@pytest.mark.parametrize(("call", "error", "phrase"), ROWS, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_message_naming_it(call, error, phrase):
    with pytest.raises(error, match=re.escape(phrase)) as caught:
        call()
    assert caught.type is error


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))




# What is accepted on purpose (docs/reliability.md lists these): each must keep working.
ACCEPTED = [
    ("integral-float-linkage-ids", lambda: Hierarchy.from_linkage(LINKAGE) == TREE),
    ("integral-float-level-maps", lambda: Hierarchy.from_levels([np.array([0.0, 0.0, 1.0, 1.0])]) == TRUTH),
    ("numpy-and-tensor-ints", lambda: Hierarchy(np.int64(4), torch.tensor([[0, 1], [2, 3], [4, 5]])) == TREE),
    ("bool-target", lambda: float(leaf_purity(torch.tensor([0, 0, 1]), torch.tensor([True, True, False]))) == 1.0),
    ("whole-float-counts", lambda: float(dendrogram_purity(TREE, counts=torch.tensor([[1.0, 0], [2, 0], [0, 1], [0, 3]]))) == 1.0),
    ("infinite-logits-as-preds", lambda: float(dendrogram_purity(TREE, torch.tensor([[math.inf, 0, 0, 0], [-math.inf, 1, 0, 0], [0, 0, 1, -math.inf]]), torch.tensor([0, 0, 1]))) == 1.0),
    ("newick-internal-labels", lambda: Hierarchy.from_newick("((0:1,1:1)95:1,(2:1,3:1)'x y':1);") == Hierarchy(4, [[0, 1], [2, 3], [4, 5]], heights=[1, 1, 2])),
    ("newick-root-length-and-spaces", lambda: Hierarchy.from_newick(" ( ( 0 , 1 ) , ( 2 , 3 ) ) : 0 ; ") == Hierarchy(4, [[0, 1], [2, 3], [4, 5]], heights=[1, 1, 2])),
    ("newick-comments", lambda: Hierarchy.from_newick("((0:1,1:1)[&support=0.9]:1,[x]2:2)[&&NHX:S=a];") == Hierarchy.from_merges([[0, 1], [3, 2]], 3)),
    ("dict-unknown-key", lambda: Hierarchy.from_dict({**SAVED, "note": "hi"}) == TREE),
    ("single-leaf", lambda: Hierarchy.from_newick(Hierarchy(1, []).to_newick()) == Hierarchy(1, [])),
]


@pytest.mark.parametrize("call", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_documented_inputs_are_accepted(call):
    assert call()
