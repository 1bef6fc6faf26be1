"""`Hierarchy`: one rooted tree type over leaves 0..K-1, in scipy's node numbering.

Leaves are nodes 0..K-1; internal node K+i is the i-th one created (children always have smaller ids);
the root is the last node. Binary trees (from L2H) speak scipy's linkage format; multifurcating trees
(ground truth from label levels) are supported by everything that does not need two children per node.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

_FORMAT = "l2h_lightning.Hierarchy"


class Hierarchy:
    """A rooted tree over `num_leaves` leaves.

    Args:
        num_leaves: K, the number of leaves (classes or clusters).
        children: for each internal node in creation order, the ids of its children (each < its own id).
        heights: for each internal node, its height (non-decreasing along `children` for a valid linkage).
            Defaults to 1, 2, ... (the merge step).
        levels: optional label maps, finest first, that this tree was built from (see `from_levels`).

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
    ) -> None:
        if int(num_leaves) < 1:
            raise ValueError(f"num_leaves must be at least 1, got {num_leaves}")
        self.num_leaves = int(num_leaves)
        self.children: list[tuple[int, ...]] = [tuple(int(c) for c in ch) for ch in children]
        if heights is None:
            heights = range(1, len(self.children) + 1)
        self.heights: list[float] = [float(h) for h in heights]
        if len(self.heights) != len(self.children):
            raise ValueError(f"heights has {len(self.heights)} entries for {len(self.children)} internal nodes")
        self.levels = None if levels is None else [torch.as_tensor(m, dtype=torch.long) for m in levels]
        self._check()

    def _check(self) -> None:
        K, used = self.num_leaves, set()
        for i, ch in enumerate(self.children):
            node = K + i
            if len(ch) < 2:
                raise ValueError(f"internal node {node} has {len(ch)} child(ren); every internal node needs at least 2")
            for c in ch:
                if not 0 <= c < node:
                    raise ValueError(f"internal node {node} has child {c}; children must be existing nodes < {node}")
                if c in used:
                    raise ValueError(f"node {c} has more than one parent")
                used.add(c)
        if len(used) != self.num_nodes - 1:
            raise ValueError(
                f"the tree is not connected: {self.num_nodes - 1 - len(used)} node(s) besides the root have no parent"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_merges(cls, merges: Any, num_leaves: int, heights: Sequence[float] | None = None) -> Hierarchy:
        """A binary tree from its (K-1, 2) merges, row i creating node K+i."""
        merges = torch.as_tensor(merges, dtype=torch.long).reshape(-1, 2)
        if merges.shape[0] != num_leaves - 1:
            raise ValueError(f"a binary tree over {num_leaves} leaves has {num_leaves - 1} merges, got {merges.shape[0]}")
        return cls(num_leaves, merges.tolist(), heights)

    @classmethod
    def from_linkage(cls, Z: Any) -> Hierarchy:
        """A binary tree from a scipy linkage matrix (K-1, 4); the inverse of `to_linkage`."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != 4:
            raise ValueError(f"a linkage matrix has shape (K-1, 4), got {Z.shape}")
        return cls(Z.shape[0] + 1, Z[:, :2].astype(np.int64).tolist(), Z[:, 2].tolist())

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
        maps = [torch.as_tensor(m, dtype=torch.long).flatten() for m in maps]
        if not maps:
            raise ValueError("from_levels needs at least one label map")
        K = maps[0].numel()
        for i, m in enumerate(maps):
            if m.numel() != K:
                raise ValueError(f"level map {i} has {m.numel()} entries, level map 0 has {K}: one entry per leaf")
            if K and m.min() < 0:
                raise ValueError(f"level map {i} has negative group ids")
        for i in range(1, len(maps)):
            fine, coarse = maps[i - 1], maps[i]
            pairs = set(zip(fine.tolist(), coarse.tolist()))
            if len({f for f, _ in pairs}) != len(pairs):
                raise ValueError(f"level maps {i - 1} and {i} do not nest: a group of level {i - 1} is split at level {i}")
        children: list[list[int]] = []
        heights: list[float] = []
        node_of = list(range(K))  # each leaf's current top node
        for depth, m in enumerate([*maps, torch.zeros(K, dtype=torch.long)], start=1):
            members: dict[int, list[int]] = {}
            for leaf, grp in enumerate(m.tolist()):
                if node_of[leaf] not in members.setdefault(grp, []):
                    members[grp].append(node_of[leaf])
            for grp in sorted(members):
                nodes = members[grp]
                if len(nodes) > 1:
                    children.append(nodes)
                    heights.append(float(depth))
                    new = K + len(children) - 1
                    for leaf in range(K):
                        if node_of[leaf] in nodes:
                            node_of[leaf] = new
        return cls(K, children, heights, levels=maps)

    @classmethod
    def from_parents(cls, parents: Sequence[int]) -> Hierarchy:
        """A tree from a parent array over nodes 0..M-1 (-1 for the root).

        Leaves (nodes without children) must be 0..K-1; internal nodes are renumbered K.. bottom-up, with
        heights = 1 + the largest child height.

        Example:
            >>> Hierarchy.from_parents([3, 3, 4, 4, -1]).to_newick()
            '(2:2,(0:1,1:1):1);'
        """
        parents = [int(p) for p in parents]
        M = len(parents)
        roots = [i for i, p in enumerate(parents) if p < 0]
        if len(roots) != 1:
            raise ValueError(f"parents must have exactly one root (-1), got {len(roots)}")
        kids: dict[int, list[int]] = {}
        for i, p in enumerate(parents):
            if p >= M:
                raise ValueError(f"node {i} has parent {p}, but there are only {M} nodes")
            if p >= 0:
                kids.setdefault(p, []).append(i)
        K = M - len(kids)
        if sorted(i for i in range(M) if i not in kids) != list(range(K)):
            raise ValueError(f"the leaves (nodes without children) must be nodes 0..{K - 1}")
        height: dict[int, int] = {i: 0 for i in range(K)}
        pending = sorted(kids)
        while pending:
            ready = [v for v in pending if all(c in height for c in kids[v])]
            if not ready:
                raise ValueError("parents contains a cycle")
            for v in ready:
                height[v] = 1 + max(height[c] for c in kids[v])
            pending = [v for v in pending if v not in height]
        new_id = {i: i for i in range(K)}
        for v in sorted(kids, key=lambda v: (height[v], v)):
            new_id[v] = len(new_id)
        order = sorted(kids, key=new_id.get)
        return cls(K, [[new_id[c] for c in kids[v]] for v in order], [float(height[v]) for v in order])

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
        out = torch.full((self.num_nodes,), -1, dtype=torch.long)
        for i, ch in enumerate(self.children):
            out[list(ch)] = self.num_leaves + i
        return out

    def sizes(self) -> list[int]:
        """Number of leaves under every node, indexed by node id."""
        n = [1] * self.num_leaves
        for ch in self.children:
            n.append(sum(n[c] for c in ch))
        return n

    def leaves(self, node: int) -> list[int]:
        """The leaves under `node`, left to right as in the dendrogram."""
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
        usable = [m for m in self.levels or [] if len(set(m.tolist())) > 1]
        return usable[-1].tolist() if usable else None

    def spans(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The dendrogram's leaf order, and every node's leaves as the range [start, end) of that order."""
        order = self.leaves(self.root)
        start = [0] * self.num_leaves
        for i, leaf in enumerate(order):
            start[leaf] = i
        end = [s + 1 for s in start]
        for ch in self.children:
            start.append(min(start[c] for c in ch))
            end.append(max(end[c] for c in ch))
        return torch.tensor(order), torch.tensor(start), torch.tensor(end)

    def to_linkage(self) -> np.ndarray:
        """scipy linkage matrix: float64 (K-1, 4) rows [node a, node b, height, leaf count]."""
        self._need_binary("to_linkage")
        n = self.sizes()
        Z = np.zeros((self.num_leaves - 1, 4), dtype=np.float64)
        for i, (a, b) in enumerate(self.children):
            Z[i] = (a, b, self.heights[i], n[self.num_leaves + i])
        return Z

    def cut(self, n_groups: int) -> torch.Tensor:
        """Each leaf's group after the first K - n_groups merges, as ids 0..n_groups-1 (numbered by smallest leaf)."""
        self._need_binary("cut")
        K = self.num_leaves
        if not 1 <= n_groups <= K:
            raise ValueError(f"n_groups must be in 1..{K}, got {n_groups}")
        top = list(range(K))  # top[node] -> node currently representing it
        for i, (a, b) in enumerate(self.children[: K - n_groups]):
            top.append(K + i)
            top[a] = top[b] = K + i

        def find(v: int) -> int:
            while top[v] != v:
                top[v] = top[top[v]]
                v = top[v]
            return v

        roots = [find(leaf) for leaf in range(K)]
        ids: dict[int, int] = {}
        return torch.tensor([ids.setdefault(r, len(ids)) for r in roots], dtype=torch.long)

    def rho(self) -> torch.Tensor:
        """(K, K) float64 tensor: rho(i, j) = (leaves under LCA(i, j) - 1) / (K - 1), 0 on the diagonal."""
        K = self.num_leaves
        out = torch.zeros(K, K, dtype=torch.float64)
        if K == 1:
            return out
        under: list[list[int]] = [[i] for i in range(K)]
        for ch in self.children:
            groups = [under[c] for c in ch]
            value = (sum(len(g) for g in groups) - 1) / (K - 1)
            for x in range(len(groups)):
                for y in range(x + 1, len(groups)):
                    a, b = torch.tensor(groups[x]), torch.tensor(groups[y])
                    out[a[:, None], b[None, :]] = value
                    out[b[:, None], a[None, :]] = value
            under.append([leaf for g in groups for leaf in g])
        return out

    # ------------------------------------------------------------------ formats
    def to_newick(self, names: Sequence[str] | None = None) -> str:
        """Newick string with branch lengths from the heights; leaves named by `names` or by their ids."""
        K = self.num_leaves
        if names is not None and len(names) != K:
            raise ValueError(f"names has {len(names)} entries for {K} leaves")
        label = [_newick_label(str(names[i]) if names is not None else str(i)) for i in range(K)]
        height = [0.0] * K + self.heights
        text = label[:]
        for i, ch in enumerate(self.children):
            v = K + i
            text.append("(" + ",".join(f"{text[c]}:{_num(height[v] - height[c])}" for c in ch) + ")")
        return text[-1] + ";"

    def to_text(self, names: Sequence[str] | None = None) -> str:
        """An indented outline, root first: internal nodes with their number of leaves and height, then leaves.

        Example:
            >>> print(Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3).to_text(["cat", "dog", "car"]))
            3 classes (height 2)
              2 classes (height 1)
                cat
                dog
              car
        """
        K = self.num_leaves
        if names is not None and len(names) != K:
            raise ValueError(f"names has {len(names)} entries for {K} leaves")
        sizes, lines, stack = self.sizes(), [], [(self.root, 0)]
        while stack:
            v, depth = stack.pop()
            if v < K:
                lines.append("  " * depth + (str(names[v]) if names is not None else str(v)))
            else:
                lines.append("  " * depth + f"{sizes[v]} classes (height {_num(self.heights[v - K])})")
                stack.extend((c, depth + 1) for c in reversed(self.children[v - K]))
        return "\n".join(lines)

    @classmethod
    def from_newick(cls, text: str, names: Sequence[str] | None = None) -> Hierarchy:
        """Parse a Newick string such as `to_newick` writes; leaf labels are ids, or are looked up in `names`.

        Node heights come from the branch lengths (1 where a length is missing); internal nodes are
        numbered by height, so a tree from `l2h` comes back with its merge order.
        """
        index = {str(n): i for i, n in enumerate(names)} if names is not None else None
        tokens = re.findall(r"'(?:[^']|'')*'|[(),:;]|[^(),:;\s]+", text.strip())
        nodes: list[tuple[float, list[tuple[str, int]]]] = []  # (height, children), in post-order
        leaf_ids: list[int] = []
        pos = 0

        def parse() -> tuple[tuple[str, int], float]:
            nonlocal pos
            if tokens[pos] == "(":
                pos += 1
                kids = []
                while True:
                    ref, height = parse()
                    length = 1.0
                    if tokens[pos] == ":":
                        length = float(tokens[pos + 1])
                        pos += 2
                    kids.append((ref, height + length))
                    pos += 1
                    if tokens[pos - 1] == ")":
                        break
                    if tokens[pos - 1] != ",":
                        raise ValueError(f"unexpected {tokens[pos - 1]!r}")
                nodes.append((kids[0][1], [ref for ref, _ in kids]))
                return ("node", len(nodes) - 1), kids[0][1]
            tok = tokens[pos]
            pos += 1
            name = tok[1:-1].replace("''", "'") if tok.startswith("'") else tok
            if index is not None:
                if name not in index:
                    raise ValueError(f"leaf {name!r} is not in names")
                leaf = index[name]
            else:
                leaf = int(name)
            leaf_ids.append(leaf)
            return ("leaf", leaf), 0.0

        try:
            parse()
        except (IndexError, ValueError) as err:
            raise ValueError(f"not a valid Newick tree: {err or 'unexpected end'}") from None
        K = len(leaf_ids)
        if sorted(leaf_ids) != list(range(K)):
            raise ValueError(f"the Newick leaves must be 0..{K - 1}, each once")
        order = sorted(range(len(nodes)), key=lambda k: (nodes[k][0], k))
        new_id = {k: K + i for i, k in enumerate(order)}
        children = [[ref if kind == "leaf" else new_id[ref] for kind, ref in nodes[k][1]] for k in order]
        return cls(K, children, [nodes[k][0] for k in order])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (see `from_dict`)."""
        out: dict[str, Any] = {
            "format": _FORMAT,
            "version": 1,
            "num_leaves": self.num_leaves,
            "children": [list(ch) for ch in self.children],
            "heights": self.heights,
        }
        if self.levels is not None:
            out["levels"] = [m.tolist() for m in self.levels]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hierarchy:
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a saved Hierarchy (format {data.get('format')!r}, expected {_FORMAT!r})")
        return cls(data["num_leaves"], data["children"], data["heights"], data.get("levels"))

    # ------------------------------------------------------------------ python
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (self.num_leaves, self.children, self.heights) == (other.num_leaves, other.children, other.heights)

    def __repr__(self) -> str:
        kind = "binary" if self.is_binary else "multifurcating"
        newick = self.to_newick()
        if len(newick) > 80:
            newick = newick[:77] + "..."
        return f"Hierarchy(num_leaves={self.num_leaves}, {kind}, {newick!r})"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _newick_label(name: str) -> str:
    if re.fullmatch(r"[^\s(),:;'\[\]]+", name):
        return name
    return "'" + name.replace("'", "''") + "'"
