"""`Hierarchy`: one rooted tree type over leaves 0..K-1, in scipy's node numbering.

Leaves are nodes 0..K-1; internal node K+i is the i-th one created (children always have smaller ids);
the root is the last node. Binary trees (from L2H) speak scipy's linkage format; multifurcating trees
(ground truth from label levels) are supported by everything that does not need two children per node.

Nothing here recurses on the depth of the tree: a chain of 10,000 leaves (depth 9,999) goes through every method.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

_FORMAT = "l2h_lightning.Hierarchy"
_VERSION = 1
_MAX_INDENT = 32  # to_text indents at most this many levels; deeper lines carry their depth instead
_INT_EVIDENCE = ("runner_up",)  # evidence entries that hold node ids (int64); every other entry is float64


class Hierarchy:
    """A rooted tree over `num_leaves` leaves.

    Args:
        num_leaves: K, the number of leaves (classes or clusters).
        children: for each internal node in creation order, the ids of its children (each < its own id).
        heights: for each internal node, its height: finite, non-negative, non-decreasing in creation order.
            Defaults to 1, 2, ... (the merge step).
        levels: optional label maps, finest first, that this tree was built from (see `from_levels`).
        evidence: optional dict of name -> one value per internal node (e.g. what `l2h` records for each merge:
            ``score``, ``partner_value``, ``runner_up``, ``runner_up_value``, ``points``, ``mass``). Kept as CPU
            tensors: int64 for ``runner_up`` (node ids, -1 for none), float64 for everything else (NaN allowed).

    Example:
        >>> tree = Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3)
        >>> tree.to_newick()
        '((0:1,1:1):1,2:2);'
        >>> tree.cut(2).tolist()
        [0, 0, 1]
    """

    def __init__(
        self,
        num_leaves: int,
        children: Sequence[Sequence[int]],
        heights: Sequence[float] | None = None,
        levels: Sequence[Any] | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        K = _as_int(num_leaves, "num_leaves")
        if K < 1:
            raise ValueError(f"num_leaves must be at least 1, got {K}")
        self.num_leaves = K
        self.children: list[tuple[int, ...]] = _children(children)
        self._parent = self._check()
        n = len(self.children)
        if heights is None:
            self.heights: list[float] = [float(h) for h in range(1, n + 1)]
        else:
            self.heights = _heights_list(heights, n)
        self.levels = None if levels is None else _level_maps(levels, "levels", K)
        self.evidence = _evidence(evidence, K, n)

    def _check(self) -> np.ndarray:
        """Validate the structure; return every node's parent (-1 for the root)."""
        K, n = self.num_leaves, len(self.children)
        parent = np.full(K + n, -1, dtype=np.int64)
        for i, ch in enumerate(self.children):
            node = K + i
            if len(ch) < 2:
                raise ValueError(f"internal node {node} has {len(ch)} child(ren); every internal node needs at least 2")
            for c in ch:
                if not 0 <= c < node:
                    raise ValueError(f"internal node {node} has child {c}; children must be existing nodes < {node}")
                if parent[c] >= 0:
                    raise ValueError(f"node {c} has more than one parent ({parent[c]} and {node})")
                parent[c] = node
        orphans = int((parent[:-1] < 0).sum())
        if orphans:
            raise ValueError(f"the tree is not connected: {orphans} node(s) besides the root have no parent")
        return parent

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_merges(
        cls,
        merges: Any,
        num_leaves: int,
        heights: Sequence[float] | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> Hierarchy:
        """A binary tree from its (K-1, 2) merges, row i creating node K+i.

        Example:
            >>> Hierarchy.from_merges([[0, 1]], num_leaves=2, evidence={"points": [4.0]}).evidence
            {'points': tensor([4.], dtype=torch.float64)}
        """
        K = _as_int(num_leaves, "num_leaves")
        rows = _int_array(merges, "merges")
        if rows.size == 0 and K == 1:
            rows = rows.reshape(0, 2)
        if rows.ndim != 2 or rows.shape[1] != 2:
            raise ValueError(f"merges must have shape (K-1, 2) = ({K - 1}, 2), got {tuple(rows.shape)}")
        if rows.shape[0] != K - 1:
            raise ValueError(f"a binary tree over {K} leaves has {K - 1} merges, got {rows.shape[0]}")
        return cls(K, rows.tolist(), heights, evidence=evidence)

    @classmethod
    def from_linkage(cls, Z: Any) -> Hierarchy:
        """A binary tree from a scipy linkage matrix (K-1, 4); the inverse of `to_linkage`.

        Like `scipy.cluster.hierarchy.is_valid_linkage`, it refuses non-integer node ids, negative or NaN
        heights and wrong leaf counts; it also refuses heights that decrease from one row to the next
        (scipy's ``is_monotonic``), e.g. the inversions of centroid or median linkage.
        """
        Z = _float_array(Z, "Z")
        if Z.ndim != 2 or Z.shape[1] != 4:
            raise ValueError(f"Z: a linkage matrix has shape (K-1, 4), got {tuple(Z.shape)}")
        ids = _int_array(Z[:, :2], "Z[:, :2] (node ids)")
        tree = cls(Z.shape[0] + 1, ids.tolist(), _heights_list(Z[:, 2], Z.shape[0], "Z[:, 2] (heights)"))
        counts = np.asarray(tree.sizes()[tree.num_leaves :], dtype=np.float64)
        bad = np.flatnonzero(Z[:, 3] != counts)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"Z[:, 3] (leaf counts): row {i} says {Z[i, 3]:g} leaves, its node has {int(counts[i])}")
        return tree

    @classmethod
    def from_levels(cls, maps: Sequence[Any]) -> Hierarchy:
        """A ground-truth tree from label maps, finest first.

        Each map has one entry per leaf: the leaf's group at that level (e.g. CIFAR-100's fine→coarse map,
        length 100, values 0..19). Levels must nest: two leaves together at one level stay together at every
        coarser level. Level i's groups get height i+1; a root joins the top level's groups.

        Example:
            >>> tree = Hierarchy.from_levels([[0, 0, 1, 1]])
            >>> tree.rho().tolist()[0]
            [0.0, 0.3333333333333333, 1.0, 1.0]
        """
        if isinstance(maps, (str, bytes)) or not isinstance(maps, (Sequence, np.ndarray, torch.Tensor)):
            raise ValueError(f"maps must be a list of label maps (one entry per leaf), got {type(maps).__name__}")
        if len(maps) == 0:
            raise ValueError("maps: from_levels needs at least one label map")
        K = len(_int_array(maps[0], "maps[0]").reshape(-1))
        levels = _level_maps(maps, "maps", K)
        children: list[list[int]] = []
        heights: list[float] = []
        node_of = np.arange(K)  # each leaf's current top node
        for depth, m in enumerate([*(lv.numpy() for lv in levels), np.zeros(K, dtype=np.int64)], start=1):
            # the distinct top nodes of each group, in order of first appearance over the leaves
            pairs = np.stack([m, node_of], axis=1)
            _, first = np.unique(pairs, axis=0, return_index=True)
            first.sort()
            members: dict[int, list[int]] = {}
            for leaf in first.tolist():
                members.setdefault(int(m[leaf]), []).append(int(node_of[leaf]))
            new_top = {}
            for grp in sorted(members):
                nodes = members[grp]
                if len(nodes) > 1:
                    children.append(nodes)
                    heights.append(float(depth))
                    new_top[grp] = K + len(children) - 1
            if new_top:
                groups, inverse = np.unique(m, return_inverse=True)
                joined = np.array([new_top.get(int(g), -1) for g in groups.tolist()])[inverse.reshape(-1)]
                node_of = np.where(joined >= 0, joined, node_of)
        return cls(K, children, heights, levels=levels)

    @classmethod
    def from_parents(cls, parents: Sequence[int]) -> Hierarchy:
        """A tree from a parent array over nodes 0..M-1 (-1 for the root).

        Leaves (nodes without children) must be 0..K-1; internal nodes are renumbered K.. bottom-up, with
        heights = 1 + the largest child height.

        Example:
            >>> Hierarchy.from_parents([3, 3, 4, 4, -1]).to_newick()
            '(2:2,(0:1,1:1):1);'
        """
        par = _int_array(parents, "parents")
        if par.ndim != 1:
            raise ValueError(f"parents must be 1-D (one parent per node), got shape {tuple(par.shape)}")
        M = par.size
        if M == 0:
            raise ValueError("parents is empty: a tree needs at least one node")
        if par.min() < -1 or par.max() >= M:
            bad = int(np.flatnonzero((par < -1) | (par >= M))[0])
            raise ValueError(f"parents: node {bad} has parent {int(par[bad])}; parents must be -1 (root) or in 0..{M - 1}")
        roots = np.flatnonzero(par == -1)
        if len(roots) != 1:
            raise ValueError(f"parents must have exactly one root (-1), got {len(roots)}")
        # depth from the root by following parent pointers; a node never reached from the root lies on a cycle
        order = _top_down(par, int(roots[0]))
        if len(order) != M:
            on_cycle = sorted(set(range(M)) - set(order.tolist()))
            raise ValueError(f"parents contains a cycle (through node(s) {on_cycle[:5]}): not every node reaches the root")
        num_kids = np.bincount(par[par >= 0], minlength=M)
        is_leaf = num_kids == 0
        K = int(is_leaf.sum())
        if not is_leaf[:K].all():
            raise ValueError(f"the leaves (nodes without children) must be nodes 0..{K - 1}")
        height = np.zeros(M, dtype=np.int64)
        for v in order[::-1].tolist():  # children before parents
            p = par[v]
            if p >= 0 and height[p] < height[v] + 1:
                height[p] = height[v] + 1
        internal = np.flatnonzero(~is_leaf)
        internal = internal[np.lexsort((internal, height[internal]))]
        new_id = np.arange(M)
        new_id[internal] = K + np.arange(len(internal))
        kids: dict[int, list[int]] = {}
        for i in range(M):
            if par[i] >= 0:
                kids.setdefault(int(par[i]), []).append(int(new_id[i]))
        return cls(K, [kids[int(v)] for v in internal], [float(height[v]) for v in internal])

    # ------------------------------------------------------------------ structure
    @property
    def num_nodes(self) -> int:
        return self.num_leaves + len(self.children)

    @property
    def root(self) -> int:
        return self.num_nodes - 1

    @property
    def is_binary(self) -> bool:
        return len(self.children) == self.num_leaves - 1 and all(len(ch) == 2 for ch in self.children)

    def _need_binary(self, what: str) -> None:
        if not self.is_binary:
            raise ValueError(f"{what} needs a binary tree; this one has nodes with more than two children")

    @property
    def merges(self) -> torch.Tensor:
        """(K-1, 2) int64 tensor: row i holds the two nodes joined into node K+i (selected group first)."""
        self._need_binary("merges")
        return torch.tensor(self.children, dtype=torch.long).reshape(-1, 2)

    @property
    def parents(self) -> torch.Tensor:
        """(num_nodes,) int64 tensor: each node's parent id, -1 for the root."""
        return torch.from_numpy(self._parent.copy())

    def sizes(self) -> list[int]:
        """Number of leaves under every node, indexed by node id."""
        n = [1] * self.num_leaves
        for ch in self.children:
            n.append(sum(n[c] for c in ch))
        return n

    def leaves(self, node: int) -> list[int]:
        """The leaves under `node`, left to right as in the dendrogram."""
        node = _as_int(node, "node")
        if not 0 <= node < self.num_nodes:
            raise ValueError(f"node must be in 0..{self.num_nodes - 1}, got {node}")
        out, stack = [], [node]
        while stack:
            v = stack.pop()
            if v < self.num_leaves:
                out.append(v)
            else:
                stack.extend(reversed(self.children[v - self.num_leaves]))
        return out

    def coarse_groups(self) -> list[int] | None:
        """Each leaf's group at the coarsest of `levels` that has at least two groups (None without one)."""
        usable = [m for m in self.levels or [] if int(torch.unique(m).numel()) > 1]
        return usable[-1].tolist() if usable else None

    def spans(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The dendrogram's leaf order, and every node's leaves as the range [start, end) of that order."""
        return tuple(torch.tensor(x, dtype=torch.long) for x in self._span_lists())  # type: ignore[return-value]

    def _span_lists(self) -> tuple[list[int], list[int], list[int]]:
        cached = self.__dict__.get("_spans")  # trees are not changed after construction: compute once
        if cached is not None and cached[0] == (self.num_leaves, len(self.children)):
            return cached[1]
        order = self.leaves(self.root)
        start = [0] * self.num_leaves
        for i, leaf in enumerate(order):
            start[leaf] = i
        end = [s + 1 for s in start]
        for ch in self.children:
            start.append(min(start[c] for c in ch))
            end.append(max(end[c] for c in ch))
        self._spans = ((self.num_leaves, len(self.children)), (order, start, end))
        return order, start, end

    def to_linkage(self) -> np.ndarray:
        """scipy linkage matrix: float64 (K-1, 4) rows [node a, node b, height, leaf count]."""
        self._need_binary("to_linkage")
        K = self.num_leaves
        Z = np.zeros((K - 1, 4), dtype=np.float64)
        if K > 1:
            Z[:, :2] = np.asarray(self.children, dtype=np.float64)
            Z[:, 2] = self.heights
            Z[:, 3] = self.sizes()[K:]
        return Z

    def cut(self, n_groups: int) -> torch.Tensor:
        """Each leaf's group after the first K - n_groups merges, as ids 0..n_groups-1 (numbered by smallest leaf)."""
        self._need_binary("cut")
        K = self.num_leaves
        n_groups = _as_int(n_groups, "n_groups")
        if not 1 <= n_groups <= K:
            raise ValueError(f"n_groups must be in 1..{K}, got {n_groups}")
        # a leaf's group is its highest ancestor among the first K - n_groups internal nodes (or itself)
        last = K + K - n_groups  # nodes below this id exist after the cut
        top = np.arange(self.num_nodes)
        for v in range(last - 1, K - 1, -1):  # parents before children: ids decrease downwards
            p = self._parent[v]
            if 0 <= p < last:
                top[v] = top[p]
        for leaf in range(K):
            p = self._parent[leaf]
            if 0 <= p < last:
                top[leaf] = top[p]
        _, ids = np.unique(top[:K], return_index=True)
        rank = np.empty(len(ids), dtype=np.int64)
        rank[np.argsort(ids)] = np.arange(len(ids))
        return torch.from_numpy(rank[np.unique(top[:K], return_inverse=True)[1].reshape(-1)])

    def rho(self) -> torch.Tensor:
        """(K, K) float64 tensor: rho(i, j) = (leaves under LCA(i, j) - 1) / (K - 1), 0 on the diagonal."""
        K = self.num_leaves
        out = np.zeros((K, K), dtype=np.float64)
        if K > 1:
            # in the dendrogram's leaf order every node's leaves are one range, and the pairs a node joins are
            # the blocks between one child's range and its later siblings' ranges: each pair is written once
            order, start, end = self._span_lists()
            sizes = self.sizes()
            for i, ch in enumerate(self.children):
                value = (sizes[K + i] - 1) / (K - 1)
                stop = end[K + i]
                for c in ch[:-1]:  # rows: the later siblings' leaves (contiguous writes), columns: this child's
                    out[end[c] : stop, start[c] : end[c]] = value
            tile = 512  # mirror the lower triangle tile by tile: a whole-matrix transpose is cache-hostile
            for r in range(0, K, tile):
                for c in range(0, r + 1, tile):
                    np.maximum(out[c : c + tile, r : r + tile], out[r : r + tile, c : c + tile].T, out=out[c : c + tile, r : r + tile])
            if order != list(range(K)):
                position = np.empty(K, dtype=np.int64)
                position[order] = np.arange(K)
                out = np.take(np.take(out, position, axis=0), position, axis=1)
        return torch.from_numpy(out)

    # ------------------------------------------------------------------ formats
    def to_newick(self, names: Sequence[str] | None = None) -> str:
        """Newick string with branch lengths from the heights; leaves named by `names` or by their ids."""
        K = self.num_leaves
        label = _labels(names, K, "names")
        label = [_newick_label(s) for s in label]
        height = [0.0] * K + self.heights
        out: list[str] = []
        stack: list[Any] = [";", self.root]  # node ids to expand, or text to emit
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
            elif item < K:
                out.append(label[item])
            else:
                ch = self.children[item - K]
                out.append("(")
                stack.append(")")
                for j in range(len(ch) - 1, -1, -1):
                    stack.append(":" + _num(height[item] - height[ch[j]]))
                    stack.append(ch[j])
                    if j:
                        stack.append(",")
        return "".join(out)

    def to_text(self, names: Sequence[str] | None = None) -> str:
        """An indented outline, root first: internal nodes with their number of leaves and height, then leaves.

        With `evidence`, each internal line also shows its node id and the merge's evidence (score of the selected
        group, partner value, runner-up partner and its value, points moved). Lines deeper than 32 levels are
        indented as level 32 and start with their depth, e.g. ``[depth 40]``.

        Example:
            >>> print(Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3).to_text(["cat", "dog", "car"]))
            3 classes (height 2)
              2 classes (height 1)
                cat
                dog
              car
        """
        K = self.num_leaves
        label = _labels(names, K, "names")
        notes = self._evidence_notes(label)
        sizes, lines, stack = self.sizes(), [], [(self.root, 0)]
        while stack:
            v, depth = stack.pop()
            indent = "  " * min(depth, _MAX_INDENT) + (f"[depth {depth}] " if depth > _MAX_INDENT else "")
            if v < K:
                lines.append(indent + label[v])
            else:
                lines.append(indent + f"{sizes[v]} classes ({notes[v - K]}height {_num(self.heights[v - K])})")
                stack.extend((c, depth + 1) for c in reversed(self.children[v - K]))
        return "\n".join(lines)

    def _evidence_notes(self, label: list[str]) -> list[str]:
        """Per internal node, "node v, <evidence>, " for to_text (empty strings without evidence)."""
        K, n = self.num_leaves, len(self.children)
        if not self.evidence:
            return [""] * n
        ev = {k: v.tolist() for k, v in self.evidence.items()}
        notes = []
        for i in range(n):
            parts = [f"node {K + i}"]
            if "score" in ev and not math.isnan(ev["score"][i]):
                parts.append(f"score {_short(ev['score'][i])}")
            if "partner_value" in ev:
                parts.append(f"partner {_short(ev['partner_value'][i])}")
            if "runner_up" in ev:
                r = ev["runner_up"][i]
                if r < 0:
                    parts.append("no runner-up")
                else:
                    who = label[r] if r < K else f"node {r}"
                    value = ev.get("runner_up_value", [math.nan] * n)[i]
                    parts.append(f"runner-up {who}" + ("" if math.isnan(value) else f" {_short(value)}"))
            if "points" in ev:
                parts.append(f"{_short(ev['points'][i])} points")
            shown = {"score", "partner_value", "runner_up", "runner_up_value", "points", "mass"}
            parts.extend(f"{k} {_short(ev[k][i])}" for k in ev if k not in shown)
            notes.append(", ".join(parts) + ", ")
        return notes

    @classmethod
    def from_newick(cls, text: str, names: Sequence[str] | None = None) -> Hierarchy:
        """Parse one Newick tree such as `to_newick` writes; leaf labels are ids, or are looked up in `names`.

        Node heights come from the branch lengths (1 where a length is missing): a node's height is the largest
        of its children's height + branch length (in trees from `to_newick` they all agree). Internal node
        labels (e.g. support values), [comments] and a root branch length are read and ignored. Internal nodes are numbered
        by height, so a tree from `l2h` comes back with its merge order.

        Example:
            >>> Hierarchy.from_newick("((a:1,b:1):1,c:2);", names=["a", "b", "c"]).merges.tolist()
            [[0, 1], [3, 2]]
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a Newick string, got {type(text).__name__}")
        index = None
        if names is not None:
            names = _labels(names, None, "names")
            index = {n: i for i, n in enumerate(names)}
            if len(index) != len(names):
                raise ValueError("names must be unique to look Newick leaves up in them")
        tokens = _newick_tokens(text)
        nodes: list[tuple[float, list[tuple[str, int]]]] = []  # (height, children), in post-order
        leaf_ids: list[int] = []
        stack: list[list[tuple[tuple[str, int], float]]] = []  # open parentheses: their children so far
        pos = 0

        def peek() -> str:
            if pos >= len(tokens):
                raise ValueError("not a valid Newick tree: it ends early (unbalanced parentheses or no ';')")
            return tokens[pos]

        def fail(what: str) -> ValueError:
            return ValueError(f"not a valid Newick tree: {what} at token {pos + 1} ({peek()!r})")

        while True:
            # a node: '(' opens an internal one, anything else is a leaf label
            tok = peek()
            if tok == "(":
                stack.append([])
                pos += 1
                continue
            if tok in ",):;":
                raise fail("expected a leaf label")
            pos += 1
            name = _unquote(tok)
            if index is not None:
                if name not in index:
                    raise ValueError(f"leaf {name!r} is not in names")
                ref = ("leaf", index[name])
            else:
                if not re.fullmatch(r"\d+", name):
                    raise ValueError(f"leaf label {name!r} is not a leaf id 0..K-1 (pass names= to read named leaves)")
                ref = ("leaf", int(name))
            leaf_ids.append(ref[1])
            height = 0.0
            while True:  # after a node: its branch length, then ',' or ')' (closing the parent) or the end
                if peek() == ":":
                    pos += 1
                    length = _branch_length(peek())
                    pos += 1
                else:
                    length = 1.0
                if not stack:
                    break
                stack[-1].append((ref, height + length))
                tok = peek()
                if tok == ",":
                    pos += 1
                    break
                if tok != ")":
                    raise fail("expected ',' or ')'")
                pos += 1
                kids = stack.pop()
                height = max(h for _, h in kids)
                nodes.append((height, [r for r, _ in kids]))
                ref = ("node", len(nodes) - 1)
                if peek() not in ",):;":  # an internal node's label: ignored
                    pos += 1
            if not stack:
                break
        if peek() != ";":
            raise fail("expected ';' after the root")
        pos += 1
        if pos != len(tokens):
            several = ";" in tokens[pos:]
            raise ValueError(
                "not a valid Newick tree: "
                + ("the text holds several trees; from_newick reads one" if several else f"trailing text after ';' ({tokens[pos]!r})")
            )
        K = len(leaf_ids)
        if sorted(leaf_ids) != list(range(K)):
            raise ValueError(f"the Newick leaves must be 0..{K - 1}, each once")
        order = sorted(range(len(nodes)), key=lambda k: (nodes[k][0], k))
        new_id = {k: K + i for i, k in enumerate(order)}
        children = [[ref if kind == "leaf" else new_id[ref] for kind, ref in nodes[k][1]] for k in order]
        return cls(K, children, [nodes[k][0] for k in order])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (see `from_dict`); evidence NaNs are stored as None."""
        out: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "num_leaves": self.num_leaves,
            "children": [list(ch) for ch in self.children],
            "heights": list(self.heights),
        }
        if self.levels is not None:
            out["levels"] = [m.tolist() for m in self.levels]
        if self.evidence is not None:
            out["evidence"] = {k: _json_values(v) for k, v in self.evidence.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hierarchy:
        """The tree `to_dict` saved (also after a JSON round trip); unknown extra keys are ignored.

        Example:
            >>> tree = Hierarchy.from_merges([[0, 1]], num_leaves=2, evidence={"runner_up": [-1]})
            >>> Hierarchy.from_dict(tree.to_dict()).evidence["runner_up"]
            tensor([-1])
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"data must be a dict from Hierarchy.to_dict(), got {type(data).__name__}")
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a saved Hierarchy (format {data.get('format')!r}, expected {_FORMAT!r})")
        missing = [k for k in ("version", "num_leaves", "children", "heights") if k not in data]
        if missing:
            raise ValueError(f"data: a saved Hierarchy is missing key(s) {missing}")
        if data["version"] != _VERSION:
            raise ValueError(f"data: saved Hierarchy version {data['version']!r} is not supported (this library reads {_VERSION})")
        evidence = data.get("evidence")
        if evidence is not None:
            if not isinstance(evidence, Mapping):
                raise ValueError(f"data['evidence'] must be a dict, got {type(evidence).__name__}")
            evidence = {k: _from_json_values(v) for k, v in evidence.items()}
        return cls(data["num_leaves"], data["children"], data["heights"], data.get("levels"), evidence)

    # ------------------------------------------------------------------ python
    def __eq__(self, other: object) -> bool:
        """Structural: same leaves, children and heights (levels and evidence are not compared)."""
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.num_leaves, self.children, self.heights) == (other.num_leaves, other.children, other.heights)

    def __repr__(self) -> str:
        kind = "binary" if self.is_binary else "multifurcating"
        newick = self.to_newick()
        if len(newick) > 80:
            newick = newick[:77] + "..."
        return f"Hierarchy(num_leaves={self.num_leaves}, {kind}, {newick!r})"


# ---------------------------------------------------------------------- validation helpers
def _as_int(value: Any, name: str) -> int:
    """An exact integer (int, NumPy integer, 0-d integer tensor); anything else is a ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.double()
        return x.numpy()
    try:
        return np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array: {err}") from None


def _int_array(x: Any, name: str) -> np.ndarray:
    """int64 array from integer (or integer-valued float) input; fractions, NaN and non-numbers are refused."""
    a = _numpy(x, name)
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must hold integer ids, got {int((~np.isfinite(a)).sum())} NaN or infinite value(s)")
        frac = a != np.round(a)
        if frac.any():
            raise ValueError(f"{name} must hold integer ids, got fractional values (e.g. {a[frac].flat[0]!r})")
        return a.astype(np.int64)
    raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")


def _float_array(x: Any, name: str) -> np.ndarray:
    a = _numpy(x, name)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def _children(children: Any) -> list[tuple[int, ...]]:
    if isinstance(children, (torch.Tensor, np.ndarray)):
        a = _int_array(children, "children")
        if a.ndim != 2 and a.size:
            raise ValueError(f"children as an array must be 2-D (one row per internal node), got shape {a.shape}")
        return [tuple(row) for row in a.tolist()]
    if isinstance(children, (str, bytes, Mapping)):
        raise ValueError(f"children must be a list of child lists, got {type(children).__name__}")
    try:
        children = list(children)
    except TypeError:
        raise ValueError(f"children must be a list of child lists, got {type(children).__name__}") from None
    out = []
    for i, ch in enumerate(children):
        if isinstance(ch, (torch.Tensor, np.ndarray)):
            ch = _int_array(ch, f"children[{i}]").reshape(-1).tolist()
        elif isinstance(ch, (str, bytes)) or not isinstance(ch, Sequence):
            raise ValueError(f"children[{i}] must be a list of node ids, got {ch!r}")
        out.append(tuple(_as_int(c, f"children[{i}] entries") for c in ch))
    return out


def _heights_list(heights: Any, n: int, name: str = "heights") -> list[float]:
    h = _float_array(heights, name)
    if h.ndim > 1:
        raise ValueError(f"{name} must be 1-D (one height per internal node), got shape {tuple(h.shape)}")
    h = h.reshape(-1)
    if h.size != n:
        raise ValueError(f"{name} has {h.size} entries for {n} internal nodes")
    if not np.isfinite(h).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(h)).sum())} NaN or infinite value(s)")
    if (h < 0).any():
        raise ValueError(f"{name} must not be negative, got {h[h < 0][0]!r} at index {int(np.flatnonzero(h < 0)[0])}")
    down = np.flatnonzero(h[1:] < h[:-1])
    if down.size:
        i = int(down[0]) + 1
        raise ValueError(
            f"{name} must not decrease from one internal node to the next (index {i}: {h[i]!r} after {h[i - 1]!r}); "
            "number internal nodes by height"
        )
    return h.tolist()


def _level_maps(maps: Sequence[Any], name: str, K: int) -> list[torch.Tensor]:
    out = []
    for i, m in enumerate(maps):
        a = _int_array(m, f"{name}[{i}]")
        if a.ndim != 1:
            raise ValueError(f"{name}[{i}] must be 1-D (one group id per leaf), got shape {tuple(a.shape)}")
        if a.size != K:
            raise ValueError(f"{name}[{i}] has {a.size} entries for {K} leaves: one entry per leaf")
        if K == 0:
            raise ValueError(f"{name}[{i}] is empty: a tree needs at least one leaf")
        if a.min() < 0:
            raise ValueError(f"{name}[{i}] has negative group ids (min {int(a.min())})")
        out.append(a)
    for i in range(1, len(out)):
        fine, coarse = out[i - 1], out[i]
        pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
        if len(np.unique(pairs[:, 0])) != len(pairs):
            raise ValueError(f"{name}: level maps {i - 1} and {i} do not nest: a group of level {i - 1} is split at level {i}")
    return [torch.from_numpy(a) for a in out]


def _evidence(evidence: Mapping[str, Any] | None, K: int, n: int) -> dict[str, torch.Tensor] | None:
    if evidence is None:
        return None
    if not isinstance(evidence, Mapping):
        raise ValueError(f"evidence must be a dict of name -> ({n},) values, got {type(evidence).__name__}")
    out = {}
    for key, values in evidence.items():
        if not isinstance(key, str):
            raise ValueError(f"evidence names must be strings, got {key!r}")
        name = f"evidence[{key!r}]"
        if key in _INT_EVIDENCE:
            a = _int_array(values, name)
        else:
            a = _float_array(values, name)
        if a.ndim != 1 or a.size != n:
            raise ValueError(f"{name} must be 1-D with one value per internal node ({n}), got shape {tuple(a.shape)}")
        if key in _INT_EVIDENCE:
            bad = np.flatnonzero((a < -1) | (a >= K + np.arange(n)))
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"{name}[{i}] = {int(a[i])} is no node that existed at merge {i} (-1 or 0..{K + i - 1})")
        out[key] = torch.from_numpy(np.ascontiguousarray(a).copy())
    return out


def _json_values(t: torch.Tensor) -> list[Any]:
    if t.dtype == torch.int64:
        return t.tolist()
    return [None if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity") if math.isinf(x) else x for x in t.tolist()]


def _from_json_values(values: Any) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return values  # the constructor names the problem
    special = {None: math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
    return [special[v] if (v is None or isinstance(v, str)) and v in special else v for v in values]


def _labels(names: Sequence[Any] | None, K: int | None, what: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(K or 0)]
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{what} must be a list of leaf names, got a string")
    try:
        names = [str(n) for n in names]
    except TypeError:
        raise ValueError(f"{what} must be a list of leaf names, got {type(names).__name__}") from None
    if K is not None and len(names) != K:
        raise ValueError(f"{what} has {len(names)} entries for {K} leaves")
    return names


# ---------------------------------------------------------------------- Newick helpers
_TOKEN = re.compile(r"\s*(?:(\[[^\]]*\])|('(?:[^']|'')*')|([(),:;])|([^(),:;\s'\[\]]+)|(\S))")


def _newick_tokens(text: str) -> list[str]:
    tokens = []
    for m in _TOKEN.finditer(text):
        if m.group(5) is not None:
            what = "unclosed quote?" if m.group(5) == "'" else "unclosed comment?" if m.group(5) == "[" else "stray bracket"
            raise ValueError(f"not a valid Newick tree: unexpected {m.group(5)!r} at character {m.start(5)} ({what})")
        if m.group(1) is None:  # [comments] are skipped
            tokens.append(m.group(2) or m.group(3) or m.group(4))
    if not tokens:
        raise ValueError("not a valid Newick tree: the text is empty")
    return tokens


def _unquote(tok: str) -> str:
    return tok[1:-1].replace("''", "'") if tok.startswith("'") else tok


def _branch_length(tok: str) -> float:
    try:
        length = float(tok)
    except ValueError:
        raise ValueError(f"not a valid Newick tree: branch length {tok!r} is not a number") from None
    if not math.isfinite(length) or length < 0:
        raise ValueError(f"not a valid Newick tree: branch length {tok!r} must be finite and non-negative")
    return length


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _short(x: float) -> str:
    return "nan" if math.isnan(x) else str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.3g}"


def _newick_label(name: str) -> str:
    if re.fullmatch(r"[^\s(),:;'\[\]]+", name):
        return name
    return "'" + name.replace("'", "''") + "'"


def _top_down(parent: np.ndarray, root: int) -> np.ndarray:
    """Nodes reachable from `root` through child links, parents before children (breadth-first)."""
    by_parent = np.argsort(parent, kind="stable")
    ids = np.arange(len(parent))
    lo = np.searchsorted(parent[by_parent], ids, "left")
    hi = np.searchsorted(parent[by_parent], ids, "right")
    out, frontier = [], [root]
    while frontier:  # every node has one parent, so each is reached at most once and this ends
        out.extend(frontier)
        frontier = [int(c) for v in frontier for c in by_parent[lo[v] : hi[v]]]
    return np.asarray(out, dtype=np.int64)
