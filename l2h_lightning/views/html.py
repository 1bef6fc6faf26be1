"""An explorable tree in one self-contained HTML file: fold, search, hover for the merge evidence.

The page carries the tree as compact JSON and a small renderer written for it (no network, no third-party code).
Every walk over the tree, in Python and in the page, uses explicit stacks or id order (children have smaller ids
than their parent), so a chain of K=10,000 works like a balanced tree.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..hierarchy import Hierarchy

EVIDENCE_KEYS = ("score", "partner_value", "runner_up", "runner_up_value", "points", "mass")
OPEN_GROUPS = 30  # the page opens folded to this many subtrees (every leaf when K <= 2 * OPEN_GROUPS)


def to_html(
    tree: Hierarchy,
    names: Sequence[str] | None = None,
    groups: Sequence[int] | None = None,
    *,
    group_names: Sequence[str] | Mapping[int, str] | None = None,
    support: Any = None,
    surprises: Sequence[Mapping[str, Any]] | None = None,
    title: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """The tree as one HTML page (a string) that works offline in any browser.

    Args:
        tree: the tree (binary from `l2h`, or multifurcating).
        names: one label per leaf (class names); leaf ids when None.
        groups: one group id per leaf (e.g. a ground-truth superclass): leaves are coloured by it, with a legend.
            Defaults to the tree's coarsest usable level, if it was built from levels.
        group_names: the legend's name for each group id (a sequence indexed by id, or a mapping).
        support: (K-1,) clade support of every internal node (e.g. bootstrap frequencies in [0, 1]).
        surprises: dicts with at least ``"node"`` (an internal node id) and ``"surprise"`` (a number); any other
            keys are shown when hovering that node.
        title: the page's heading.
        metrics: name -> value, shown under the title (e.g. ``{"DP": 0.81, "LHD": 0.12}``).

    Hovering an internal node shows its merge evidence when ``tree.evidence`` holds it.

    Example:
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3)
        >>> page = to_html(tree, names=["cat", "dog", "car"], groups=[0, 0, 1], group_names=["animals", "vehicles"])
        >>> page.startswith("<!DOCTYPE html>") and "vehicles" in page
        True
    """
    if not isinstance(tree, Hierarchy):
        raise ValueError(f"tree must be a Hierarchy, got {type(tree).__name__}")
    K, n_inner = tree.num_leaves, len(tree.children)
    data: dict[str, Any] = {
        "K": K,
        "ch": [list(ch) for ch in tree.children],
        "h": [_num(h) for h in tree.heights],
        "names": _names(names, K),
        "open": K if K <= 2 * OPEN_GROUPS else OPEN_GROUPS,
    }
    data.update(_groups(tree, groups, group_names))
    data["ev"] = _evidence(getattr(tree, "evidence", None), n_inner)
    data["sup"] = None if support is None else _per_internal(support, n_inner, "support")
    data["sur"] = _surprises(surprises, K, tree.num_nodes)
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string, got {type(title).__name__}")
    data["title"] = title
    data["metrics"] = _metrics(metrics)
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # "<" never appears raw inside the JSON block, so no name can close the <script> element early
    blob = blob.replace("<", "\\u003c")
    page_title = html.escape(title if title else f"L2H tree ({K} classes)")
    parts = {"TITLE": page_title, "STYLE": _STYLE, "SCRIPT": _SCRIPT, "DATA": blob}
    return re.sub(r"%%(TITLE|STYLE|SCRIPT|DATA)%%", lambda m: parts[m.group(1)], _PAGE)  # one pass: no re-expansion


def save_html(tree: Hierarchy, path: str | Path, **kwargs: Any) -> Path:
    """Write `to_html(tree, **kwargs)` to `path` (UTF-8; parent folders created); returns the path.

    Example:
        >>> import tempfile
        >>> from l2h_lightning import Hierarchy
        >>> tree = Hierarchy.from_merges([[0, 1], [3, 2]], num_leaves=3)
        >>> save_html(tree, Path(tempfile.mkdtemp()) / "tree.html").stat().st_size > 1000
        True
    """
    page = to_html(tree, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- input checks
def _num(x: Any) -> int | float | None:
    """A JSON number, 6 significant digits (the page shows 4); None for NaN/inf."""
    x = float(x)
    if not math.isfinite(x):
        return None
    if x.is_integer() and abs(x) < 2**53:
        return int(x)
    return float(f"{x:.6g}")


def _names(names: Sequence[str] | None, K: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(K)]
    if isinstance(names, str):
        raise ValueError("names must be a sequence of strings (one per leaf), got a single string")
    names = [str(n) for n in names]
    if len(names) != K:
        raise ValueError(f"names has {len(names)} entries; the tree has {K} leaves")
    return names


def _int_list(values: Any, what: str) -> list[int]:
    t = torch.as_tensor(values)
    if t.dim() != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError(f"{what} must hold integer ids, got fractional or non-finite values")
    elif t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} must hold integer ids, got dtype {t.dtype}")
    return [int(v) for v in t.tolist()]


def _groups(tree: Hierarchy, groups: Any, group_names: Any) -> dict[str, Any]:
    K = tree.num_leaves
    if groups is None:
        groups = tree.coarse_groups()
    if groups is None:
        if group_names is not None:
            raise ValueError("group_names needs groups (one group id per leaf)")
        return {"groups": None, "gnames": [], "gcol": []}
    ids = _int_list(groups, "groups")
    if len(ids) != K:
        raise ValueError(f"groups has {len(ids)} entries; the tree has {K} leaves")
    distinct = sorted(set(ids))
    if group_names is None:
        labels = [f"group {g}" for g in distinct]
    elif isinstance(group_names, Mapping):
        labels = [str(group_names.get(g, f"group {g}")) for g in distinct]
    elif isinstance(group_names, str):
        raise ValueError("group_names must be a sequence or mapping of names, got a single string")
    else:
        group_names = list(group_names)
        missing = [g for g in distinct if not 0 <= g < len(group_names)]
        if missing:
            raise ValueError(f"group_names has {len(group_names)} entries, so it names no group id {missing[0]}")
        labels = [str(group_names[g]) for g in distinct]
    index = {g: i for i, g in enumerate(distinct)}
    return {"groups": [index[g] for g in ids], "gnames": labels, "gcol": _palette(len(distinct))}


def _per_internal(values: Any, n_inner: int, what: str) -> list[int | float | None]:
    t = torch.as_tensor(values)
    if t.is_complex() or t.dim() != 1 or t.numel() != n_inner:
        raise ValueError(
            f"{what} must be a ({n_inner},) tensor, one value per internal node; got shape {tuple(t.shape)}"
        )
    return [_num(v) for v in t.double().tolist()]


def _evidence(evidence: Any, n_inner: int) -> dict[str, list[Any]] | None:
    if not evidence:
        return None
    out = {}
    for key in [k for k in EVIDENCE_KEYS if k in evidence] + [k for k in evidence if k not in EVIDENCE_KEYS]:
        t = torch.as_tensor(evidence[key])
        if t.dim() == 1 and t.numel() == n_inner and not t.is_complex():
            out[str(key)] = [_num(v) for v in t.double().tolist()]
    return out or None


def _surprises(surprises: Any, K: int, num_nodes: int) -> list[dict[str, Any]]:
    """The records worth marking (surprise > 0), each with its scalar details; leaf lists and evidence dropped
    (the page has both already), other lists cut to their first 10 items."""
    if surprises is None:
        return []
    if isinstance(surprises, (str, Mapping)):
        raise ValueError(f"surprises must be a list of dicts, got {type(surprises).__name__}")
    out = []
    for i, entry in enumerate(surprises):
        if not isinstance(entry, Mapping) or "node" not in entry or "surprise" not in entry:
            raise ValueError(f"surprises[{i}] must be a dict with 'node' and 'surprise', got {entry!r}")
        node = entry["node"]
        if isinstance(node, torch.Tensor):
            node = node.item()
        if isinstance(node, bool) or not isinstance(node, (int, float)) or not float(node).is_integer() or not (
            K <= int(node) < num_nodes
        ):
            raise ValueError(
                f"surprises[{i}]['node'] must be an internal node id in {K}..{num_nodes - 1}, got {node!r}"
            )
        value = entry["surprise"]
        try:
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError):
            raise ValueError(f"surprises[{i}]['surprise'] must be a number, got {value!r}") from None
        if not value > 0:  # 0 or NaN: nothing to mark
            continue
        item = {str(k): _jsonable(v) for k, v in entry.items() if k not in ("node", "leaves", "evidence")}
        item["node"] = int(node)
        out.append(item)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return _num(value)
    if isinstance(value, (list, tuple)):
        head = [v if isinstance(v, str) or v is None else _num(v) if isinstance(v, (int, float)) else str(v)[:80]
                for v in value[:10]]
        return head + ([f"\u2026 {len(value)} in all"] if len(value) > 10 else [])
    return str(value)[:200]


def _metrics(metrics: Any) -> list[list[str]]:
    if metrics is None:
        return []
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a mapping of name -> value, got {type(metrics).__name__}")
    out = []
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, float):
            text = f"{value:.4g}"
        else:
            text = str(value)
        out.append([str(name), text])
    return out


def _palette(n: int) -> list[str]:
    """Group colours, the same rule as the PNG dendrogram (tab10, tab20, then hue steps), as hex strings."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        colours = [colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        colours = [colormaps["tab20"](i) for i in range(n)]
    else:
        colours = [colormaps["hsv"](i / n) for i in range(n)]
    return [to_hex(c) for c in colours]


# ---------------------------------------------------------------------------------------------- the page
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>%%TITLE%%</title>
<style>%%STYLE%%</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div id="metrics"></div>
</header>
<nav id="bar">
  <input id="q" type="search" placeholder="Search a class name (Enter)" autocomplete="off" spellcheck="false">
  <button id="find" type="button">Find</button>
  <span id="found"></span>
  <span class="sep"></span>
  <button id="expand" type="button" title="Open every subtree">Expand all</button>
  <button id="fold" type="button" title="Show only the top of the tree">Fold to</button>
  <input id="level" type="number" min="1" step="1" title="number of subtrees to show">
  <span class="unit">subtrees</span>
  <span class="sep"></span>
  <span id="shown"></span>
</nav>
<main>
  <aside id="side">
    <section id="legend"></section>
    <section id="surprises"></section>
    <section class="help">
      <b>How to read it</b>
      <p>The root is on the left, classes on the right. Click a dot to fold or open its subtree; a folded subtree
      is a triangle with its size and first classes (click it to open). Hover a dot for how that merge was made.
      Search highlights matching classes and opens the way to them; click a legend entry to highlight a group.</p>
    </section>
  </aside>
  <div id="panel"><svg id="tree" xmlns="http://www.w3.org/2000/svg"></svg></div>
</main>
<div id="tip" role="tooltip"></div>
<script type="application/json" id="l2h-data">%%DATA%%</script>
<script>%%SCRIPT%%</script>
</body>
</html>
"""

_STYLE = """
:root { --ink: #1d2430; --muted: #6a7384; --line: #9aa3b2; --bg: #f7f8fa; --card: #fff; --hit: #ffe58a; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
  background: var(--bg); display: flex; flex-direction: column; }
header { padding: 10px 16px 6px; background: var(--card); border-bottom: 1px solid #e3e6eb; }
h1 { font-size: 18px; margin: 0 0 4px; font-weight: 600; }
#metrics { display: flex; flex-wrap: wrap; gap: 6px; }
.chip { background: #eef1f6; border-radius: 10px; padding: 1px 9px; font-size: 12px; }
.chip b { font-weight: 600; margin-right: 4px; color: var(--muted); }
#bar { display: flex; align-items: center; gap: 6px; padding: 6px 16px; background: var(--card);
  border-bottom: 1px solid #e3e6eb; flex-wrap: wrap; }
#bar input, #bar button { font: inherit; border: 1px solid #c9ced8; border-radius: 5px; padding: 3px 8px;
  background: #fff; color: var(--ink); }
#bar button { cursor: pointer; background: #f1f3f7; }
#bar button:hover { background: #e4e8ef; }
#q { width: 260px; }
#level { width: 80px; }
.unit, #found, #shown { color: var(--muted); }
#found.none { color: #b3261e; }
.sep { width: 1px; height: 20px; background: #e3e6eb; margin: 0 6px; }
main { flex: 1; display: flex; min-height: 0; }
#side { width: 250px; flex: none; overflow: auto; padding: 10px 12px; border-right: 1px solid #e3e6eb;
  background: var(--card); }
#side section { margin-bottom: 14px; }
#side h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 6px; }
.lg { display: flex; align-items: center; gap: 6px; padding: 2px 4px; border-radius: 4px; cursor: pointer; }
.lg:hover, .lg.on { background: #eef1f6; }
.lg i { width: 12px; height: 12px; border-radius: 3px; flex: none; }
.lg span { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.lg em { color: var(--muted); font-style: normal; }
.sp { padding: 3px 4px; border-radius: 4px; cursor: pointer; }
.sp:hover { background: #fff4e0; }
.sp b { color: #c05600; }
.sp .more { color: var(--muted); }
.help p { color: var(--muted); margin: 4px 0 0; }
#panel { flex: 1; overflow: auto; background: var(--card); }
svg { display: block; }
svg text { font-size: 12px; fill: var(--ink); dominant-baseline: central; }
.nd { fill: #fff; stroke: #5b6475; stroke-width: 1.2; cursor: pointer; }
.nd:hover, .wedge:hover { stroke: #1a5fd0; stroke-width: 2.5; }
.nd.sur { stroke: #e07000; stroke-width: 2.4; }
.wedge { stroke: #5b6475; stroke-width: 1; cursor: pointer; }
text.clade { cursor: pointer; }
text.clade .n { font-weight: 600; }
text.clade .more, text.sup { fill: var(--muted); }
text.sup { font-size: 9px; }
text.hit { font-weight: 700; }
rect.hitbg { fill: var(--hit); }
text .hits { fill: #b3261e; font-weight: 600; }
.flash { animation: flash 1.2s ease-out 2; }
@keyframes flash { 50% { stroke: #e07000; stroke-width: 6; } }
#tip { position: fixed; display: none; max-width: 460px; background: #fff; border: 1px solid #d5d9e0;
  border-radius: 6px; box-shadow: 0 4px 16px rgba(0,0,0,.14); padding: 8px 10px; pointer-events: none;
  font-size: 12px; z-index: 10; }
#tip table { border-collapse: collapse; margin-top: 4px; }
#tip td { padding: 1px 8px 1px 0; vertical-align: top; }
#tip td:first-child { color: var(--muted); white-space: nowrap; }
#tip .head { font-weight: 600; }
"""

_SCRIPT = r"""
(function () {
"use strict";
var D = JSON.parse(document.getElementById("l2h-data").textContent);
var K = D.K, CH = D.ch, NI = CH.length, N = K + NI, ROOT = N - 1, NAMES = D.names, HT = D.h;
var G = D.groups, GN = D.gnames, GC = D.gcol, EV = D.ev, SUP = D.sup;
var ROW = 17, TOP = 12, LEFT = 16, GREY = "#8d96a6";
var EV_LABEL = {score: "score S(G*) of the selected group", partner_value: "partner value A(H\u2020)",
  runner_up: "runner-up partner", runner_up_value: "runner-up value", points: "points reassigned",
  mass: "mass moved to the partner"};

// structure: children always have smaller ids than their parent, so id order is a bottom-up walk
var parent = new Int32Array(N).fill(-1), size = new Int32Array(N), pure = new Int32Array(N).fill(-1);
var i, j, v;
for (v = 0; v < K; v++) { size[v] = 1; if (G) pure[v] = G[v]; }
for (i = 0; i < NI; i++) {
  var ch = CH[i], s = 0, g = pure[ch[0]];
  for (j = 0; j < ch.length; j++) { parent[ch[j]] = K + i; s += size[ch[j]]; if (pure[ch[j]] !== g) g = -1; }
  size[K + i] = s; pure[K + i] = g;
}
var SUR = {};
D.sur.forEach(function (e) { SUR[e.node] = e; });
var TOPSUR = D.sur.slice().sort(function (a, b) { return (b.surprise || 0) - (a.surprise || 0); }).slice(0, 20);
var RING = {};   // only the most surprising merges get a ring (the side panel lists the same ones)
TOPSUR.forEach(function (e) { RING[e.node] = 1; });

var collapsed = new Uint8Array(N), hit = new Uint8Array(N), hits = new Int32Array(N);
var X = new Float64Array(N), Y = new Float64Array(N);
var svg = document.getElementById("tree"), panel = document.getElementById("panel"), tip = document.getElementById("tip");
var shown = 0, leavesShown = 0, renderMs = 0;

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
function fmt(x) {
  if (x === null || x === undefined) return "\u2014";
  if (typeof x !== "number") return esc(x);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return String(Number(x.toPrecision(4)));
}
function plain(x) {   // record fields: ids stay as written (no thousands separators)
  return typeof x === "number" && !Number.isInteger(x) ? fmt(x) : x === null ? "\u2014" : esc(x);
}
function short(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
function colour(g) { return g >= 0 ? GC[g] : GREY; }
function kids(u) { return CH[u - K]; }

// the first `limit` leaves under u, left to right (explicit stack)
function leavesOf(u, limit) {
  var out = [], st = [u];
  while (st.length && out.length < limit) {
    var w = st.pop();
    if (w < K) out.push(w);
    else { var c = kids(w); for (var k = c.length - 1; k >= 0; k--) st.push(c[k]); }
  }
  return out;
}
var compCache = {};
function composition(u) {   // [[group, count], ...] largest first
  if (!G) return [];
  if (compCache[u]) return compCache[u];
  var count = {}, ls = leavesOf(u, K);
  for (var k = 0; k < ls.length; k++) count[G[ls[k]]] = (count[G[ls[k]]] || 0) + 1;
  var out = Object.keys(count).map(function (g) { return [+g, count[g]]; });
  out.sort(function (a, b) { return b[1] - a[1] || a[0] - b[0]; });
  return (compCache[u] = out);
}

// ------------------------------------------------------------------ folding
function foldTo(n) {
  n = Math.max(1, Math.min(K, n | 0));
  for (var u = K; u < N; u++) collapsed[u] = 1;
  var rows = 1;
  // undoing the merges from the last one down: a node's parent (larger id) is always open before it
  for (var u2 = ROOT; u2 >= K && rows < n; u2--) { collapsed[u2] = 0; rows += kids(u2).length - 1; }
}
function reveal(list) {   // open every ancestor of the given nodes
  var seen = new Uint8Array(N);
  for (var k = 0; k < list.length; k++) {
    var u = parent[list[k]];
    while (u >= 0 && !seen[u]) { seen[u] = 1; collapsed[u] = 0; u = parent[u]; }
  }
}
function countHits() {
  for (var u = 0; u < K; u++) hits[u] = hit[u];
  for (var k = 0; k < NI; k++) {
    var c = CH[k], s = 0;
    for (var m = 0; m < c.length; m++) s += hits[c[m]];
    hits[K + k] = s;
  }
}

// ------------------------------------------------------------------ drawing (only what is not folded away)
// Layout covers every open node (flat arrays, cheap); drawing emits SVG only for what is open and, past
// FULL rows, only for the rows near the scrolled-to window, so a fully open tree of 10,000 stays quick.
var FULL = 2500, L = null, drawn = null;
function layout() {
  var rows = [], inner = [], st = [ROOT];
  while (st.length) {
    var u = st.pop();
    if (u < K || collapsed[u]) rows.push(u);
    else { inner.push(u); var c = kids(u); for (var k = c.length - 1; k >= 0; k--) st.push(c[k]); }
  }
  var R = inner.length;
  var treeW = Math.max(240, Math.min(900, panel.clientWidth - 480));
  var step = R ? Math.min(30, treeW / R) : 0;
  var X0 = LEFT + (SUP ? 24 : 0) + Math.max(R * step, 8);
  var r, labelChars = 0, nLeaves = 0;
  for (r = 0; r < rows.length; r++) {
    var t = rows[r];
    Y[t] = TOP + r * ROW + ROW / 2; X[t] = X0;
    if (t < K) { nLeaves++; labelChars = Math.max(labelChars, NAMES[t].length); }
    else labelChars = Math.max(labelChars, cladeLabel(t).plain + (hits[t] ? 14 : 0));
  }
  // x: rank of the merge among the open nodes (height order), so any fold uses the full width
  var byH = inner.slice().sort(function (a, b) { return (HT[a - K] - HT[b - K]) || (a - b); });
  for (r = 0; r < R; r++) X[byH[r]] = X0 - (r + 1) * step;
  inner.sort(function (a, b) { return a - b; });   // children before parents
  for (r = 0; r < R; r++) { var cc = kids(inner[r]); Y[inner[r]] = (Y[cc[0]] + Y[cc[cc.length - 1]]) / 2; }
  L = {rows: rows, inner: inner, X0: X0, showSup: SUP && R <= 250, windowed: rows.length > FULL};
  svg.setAttribute("width", Math.ceil(X0 + 30 + labelChars * 7.2));
  svg.setAttribute("height", TOP * 2 + rows.length * ROW);
  shown = rows.length; leavesShown = nLeaves;
  document.getElementById("shown").textContent = shown.toLocaleString("en-US") + " rows \u00b7 " +
    leavesShown.toLocaleString("en-US") + " of " + K.toLocaleString("en-US") + " classes open";
  document.getElementById("level").value = shown;
}
var labelCache = {};
function cladeLabel(t) {   // a folded subtree's label: size, first classes, its main groups
  if (labelCache[t]) return labelCache[t];
  var first = leavesOf(t, 3).map(function (l) { return short(NAMES[l], 32); }), comp = composition(t);
  var txt = '<tspan class="n">' + size[t] + "</tspan> " + esc(first.join(", ")) +
    (size[t] > 3 ? ' <tspan class="more">\u2026</tspan>' : "");
  var plain = String(size[t]).length + 2 + first.join(", ").length;
  comp.slice(0, 3).forEach(function (gc) {
    txt += ' <tspan fill="' + GC[gc[0]] + '">\u25A0</tspan><tspan class="more">' + esc(GN[gc[0]]) + " " + gc[1] +
      "</tspan>";
    plain += GN[gc[0]].length + String(gc[1]).length + 4;
  });
  if (comp.length > 3) { txt += '<tspan class="more"> +' + (comp.length - 3) + "</tspan>"; plain += 4; }
  return (labelCache[t] = {html: txt, plain: plain});
}
function draw() {
  var rows = L.rows, inner = L.inner, X0 = L.X0, lo = -Infinity, hi = Infinity;
  if (L.windowed) {
    var h = panel.clientHeight || 1000;
    lo = panel.scrollTop - h; hi = panel.scrollTop + 2 * h;
  }
  var paths = {}, out = [], r, m;
  function seg(col, d) { (paths[col] || (paths[col] = [])).push(d); }
  function f(a) { return a.toFixed(1); }
  for (r = 0; r < inner.length; r++) {
    var w = inner[r], c2 = kids(w), xw = f(X[w]), top = Y[c2[0]], bottom = Y[c2[c2.length - 1]];
    if (bottom < lo || top > hi) continue;
    seg(colour(pure[w]), "M" + xw + " " + f(Math.max(top, lo)) + "V" + f(Math.min(bottom, hi)));
    for (m = 0; m < c2.length; m++)
      if (Y[c2[m]] >= lo && Y[c2[m]] <= hi) seg(colour(pure[c2[m]]), "M" + xw + " " + f(Y[c2[m]]) + "H" + f(X[c2[m]]));
  }
  Object.keys(paths).forEach(function (col) {
    out.push('<path fill="none" stroke="' + col + '" stroke-width="1.4" d="' + paths[col].join("") + '"/>');
  });
  for (r = 0; r < inner.length; r++) {
    var n = inner[r];
    if (Y[n] < lo || Y[n] > hi) continue;
    var fill = SUP && SUP[n - K] !== null ? ' style="fill:' + supColour(SUP[n - K]) + '"' : "";
    out.push('<circle class="' + (RING[n] ? "nd sur" : "nd") + '" data-v="' + n + '" cx="' + f(X[n]) + '" cy="' +
      f(Y[n]) + '" r="' + (RING[n] ? 5 : 4) + '"' + fill + "/>");
    if (L.showSup && SUP[n - K] !== null)
      out.push('<text class="sup" x="' + f(X[n] - 5) + '" y="' + f(Y[n] - 8) + '" text-anchor="end">' +
        SUP[n - K].toFixed(2) + "</text>");
  }
  var first = Math.max(0, Math.floor((lo - TOP) / ROW)), last = Math.min(rows.length - 1, Math.ceil((hi - TOP) / ROW));
  for (r = first; r <= last; r++) {
    var t = rows[r], y = f(Y[t]);
    if (t < K) {
      if (hit[t]) out.push('<rect class="hitbg" x="' + (X0 + 15) + '" y="' + f(Y[t] - 8) + '" width="' +
        (NAMES[t].length * 7.2 + 6).toFixed(0) + '" height="16" rx="3"/>');
      out.push('<rect data-v="' + t + '" x="' + (X0 + 2) + '" y="' + f(Y[t] - 5) + '" width="10" height="10" rx="2" fill="' +
        colour(G ? G[t] : -1) + '"/>');
      out.push('<text class="leaf' + (hit[t] ? " hit" : "") + '" data-v="' + t + '" x="' + (X0 + 18) + '" y="' + y +
        '">' + esc(NAMES[t]) + "</text>");
    } else {
      var txt = cladeLabel(t).html;
      if (hits[t]) txt += '<tspan class="hits"> \u2190 ' + hits[t] + (hits[t] > 1 ? " matches" : " match") + "</tspan>";
      out.push('<path class="wedge" data-v="' + t + '" fill="' + colour(pure[t]) + '" d="M' + X0 + " " + y + "L" +
        (X0 + 13) + " " + f(Y[t] - 6) + "V" + f(Y[t] + 6) + 'Z"/>');
      out.push('<text class="clade" data-v="' + t + '" x="' + (X0 + 18) + '" y="' + y + '">' + txt + "</text>");
    }
  }
  svg.innerHTML = out.join("");
  drawn = [lo, hi];
  if (!L.windowed) {   // the labels' real extent (the estimate in layout only has to be wide enough)
    var box = svg.getBBox();
    if (box.width) svg.setAttribute("width", Math.ceil(box.x + box.width + 16));
  }
}
function render() {
  var t0 = performance.now();
  layout();
  draw();
  renderMs = performance.now() - t0;
}
var pending = false;
panel.addEventListener("scroll", function () {
  if (!L || !L.windowed || pending) return;
  var h = panel.clientHeight;
  if (panel.scrollTop - h / 2 >= drawn[0] && panel.scrollTop + 1.5 * h <= drawn[1]) return;
  pending = true;
  requestAnimationFrame(function () { pending = false; draw(); });
});
function supColour(p) {   // white (no support) to dark blue (full support)
  p = Math.max(0, Math.min(1, p));
  var c = function (a, b) { return Math.round(a + (b - a) * p); };
  return "rgb(" + c(255, 20) + "," + c(255, 70) + "," + c(255, 160) + ")";
}

// keep the node the user acted on where it was on screen
function keepInPlace(u, act) {
  var before = Y[u] - panel.scrollTop, t0 = performance.now();
  act();
  layout();
  panel.scrollTop = Y[u] - before;
  draw();
  renderMs = performance.now() - t0;
}
function scrollToNode(u) {
  panel.scrollTop = Math.max(0, Y[u] - panel.clientHeight / 3);
  if (X[u] < panel.scrollLeft || X[u] > panel.scrollLeft + panel.clientWidth - 200)
    panel.scrollLeft = Math.max(0, X[u] - 200);
  if (L.windowed) draw();
  var el = svg.querySelector('[data-v="' + u + '"]');
  if (el) { el.classList.add("flash"); setTimeout(function () { el.classList.remove("flash"); }, 2600); }
}

// ------------------------------------------------------------------ hover
function describe(u) {
  if (u < K) return "<b>" + esc(NAMES[u]) + "</b>";
  var ls = leavesOf(u, 4).map(function (l) { return esc(NAMES[l]); });
  return "node " + u + " (" + size[u] + " classes: " + ls.slice(0, 3).join(", ") + (size[u] > 3 ? ", \u2026" : "") + ")";
}
function tipHtml(u) {
  var rows = [];
  function row(k, val) { rows.push("<tr><td>" + k + "</td><td>" + val + "</td></tr>"); }
  if (u < K) {
    var head = '<div class="head">' + esc(NAMES[u]) + "</div>";
    row("class id", u);
    if (G) row("group", '<span style="color:' + GC[G[u]] + '">\u25A0</span> ' + esc(GN[G[u]]));
    return head + "<table>" + rows.join("") + "</table>";
  }
  var c = kids(u), i0 = u - K;
  var h = '<div class="head">node ' + u + " \u00b7 merge " + (i0 + 1) + " of " + NI + " \u00b7 " + size[u] + " classes</div>";
  row("height", fmt(HT[i0]));
  if (c.length === 2) { row("selected group", describe(c[0])); row("partner", describe(c[1])); }
  else c.forEach(function (w, k) { row("child " + (k + 1), describe(w)); });
  if (G) row("groups", composition(u).slice(0, 4).map(function (gc) {
    return '<span style="color:' + GC[gc[0]] + '">\u25A0</span> ' + esc(GN[gc[0]]) + " " + gc[1]; }).join(", ") +
    (composition(u).length > 4 ? ", \u2026" : ""));
  if (EV) Object.keys(EV).forEach(function (k) {
    var val = EV[k][i0];
    if (k === "runner_up") val = val === null || val < 0 ? "none" : describe(val); else val = fmt(val);
    row(EV_LABEL[k] || esc(k), val);
  });
  else row("merge evidence", "not recorded for this tree");
  if (SUP) row("clade support", fmt(SUP[i0]));
  if (SUR[u]) Object.keys(SUR[u]).forEach(function (k) {
    if (k !== "node") row(k === "surprise" ? "<b>surprise</b>" : esc(k), Array.isArray(SUR[u][k]) ?
      SUR[u][k].map(plain).join(" ") : plain(SUR[u][k]));
  });
  if (collapsed[u]) row("", "<i>folded \u2014 click to open</i>");
  return h + "<table>" + rows.join("") + "</table>";
}
svg.addEventListener("mouseover", function (e) {
  var el = e.target.closest("[data-v]");
  if (!el) return;
  tip.innerHTML = tipHtml(+el.getAttribute("data-v"));
  tip.style.display = "block";
  placeTip(e);
});
svg.addEventListener("mousemove", function (e) { if (tip.style.display === "block") placeTip(e); });
svg.addEventListener("mouseout", function (e) {
  if (!e.relatedTarget || !e.relatedTarget.closest || !e.relatedTarget.closest("[data-v]")) tip.style.display = "none";
});
function placeTip(e) {
  var w = tip.offsetWidth, h = tip.offsetHeight;
  var x = e.clientX + 14, y = e.clientY + 14;
  if (x + w > window.innerWidth - 4) x = Math.max(4, e.clientX - w - 14);
  if (y + h > window.innerHeight - 4) y = Math.max(4, e.clientY - h - 14);
  tip.style.left = x + "px"; tip.style.top = y + "px";
}

// ------------------------------------------------------------------ controls
svg.addEventListener("click", function (e) {
  var el = e.target.closest("[data-v]");
  if (!el) return;
  var u = +el.getAttribute("data-v");
  if (u < K) return;
  keepInPlace(u, function () { collapsed[u] = collapsed[u] ? 0 : 1; });
  tip.innerHTML = tipHtml(u);
});
function highlight(list, label) {
  hit.fill(0);
  for (var k = 0; k < list.length; k++) hit[list[k]] = 1;
  countHits();
  reveal(list.slice(0, 2000));   // beyond that, folded subtrees say how many matches they hold
  render();
  var f = document.getElementById("found");
  f.className = list.length || !label ? "" : "none";
  f.textContent = label ? (list.length ? list.length + (list.length > 1 ? " matches" : " match") : "no match") : "";
  if (list.length) scrollToNode(list[0]);
}
function search() {
  var q = document.getElementById("q").value.trim().toLowerCase(), found = [];
  document.querySelectorAll(".lg.on").forEach(function (el) { el.classList.remove("on"); });
  if (q) for (var u = 0; u < K; u++) if (NAMES[u].toLowerCase().indexOf(q) >= 0) found.push(u);
  highlight(found, q);
}
document.getElementById("q").addEventListener("keydown", function (e) { if (e.key === "Enter") search(); });
document.getElementById("q").addEventListener("search", search);
document.getElementById("find").addEventListener("click", search);
document.getElementById("expand").addEventListener("click", function () { collapsed.fill(0); render(); });
document.getElementById("fold").addEventListener("click", function () {
  foldTo(+document.getElementById("level").value || D.open); render(); panel.scrollTop = 0;
});
document.getElementById("level").addEventListener("keydown", function (e) {
  if (e.key === "Enter") document.getElementById("fold").click();
});
document.addEventListener("keydown", function (e) {
  if (e.key === "/" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); document.getElementById("q").focus(); }
});

// ------------------------------------------------------------------ header and side panel
document.getElementById("title").textContent = D.title || ("L2H tree of " + K.toLocaleString("en-US") + " classes");
document.getElementById("metrics").innerHTML = [["classes", K.toLocaleString("en-US")]].concat(D.metrics)
  .map(function (m) { return '<span class="chip"><b>' + esc(m[0]) + "</b>" + esc(m[1]) + "</span>"; }).join("");
if (G) {
  var counts = new Int32Array(GN.length);
  for (v = 0; v < K; v++) counts[G[v]]++;
  var lg = document.getElementById("legend");
  lg.innerHTML = "<h2>Groups</h2>" + GN.map(function (name, g) {
    return '<div class="lg" data-g="' + g + '" title="highlight this group"><i style="background:' + GC[g] +
      '"></i><span title="' + esc(name) + '">' + esc(name) + "</span><em>" + counts[g] + "</em></div>";
  }).join("");
  lg.addEventListener("click", function (e) {
    var el = e.target.closest(".lg");
    if (!el) return;
    var g = +el.getAttribute("data-g"), on = !el.classList.contains("on"), list = [];
    lg.querySelectorAll(".lg.on").forEach(function (x) { x.classList.remove("on"); });
    if (on) { el.classList.add("on"); for (var u = 0; u < K; u++) if (G[u] === g) list.push(u); }
    document.getElementById("q").value = "";
    highlight(list, "");
  });
}
if (D.sur.length) {
  var top = TOPSUR;
  var sp = document.getElementById("surprises");
  sp.innerHTML = "<h2>Most surprising merges</h2>" + top.map(function (e) {
    return '<div class="sp" data-v="' + e.node + '"><b>' + fmt(e.surprise) + "</b> " +
      (typeof e.label === "string" ? esc(e.label) + ' <span class="more">(node ' + e.node + ")</span>" : describe(e.node)) +
      "</div>";
  }).join("");
  sp.addEventListener("click", function (e) {
    var el = e.target.closest(".sp");
    if (!el) return;
    var u = +el.getAttribute("data-v");
    reveal([u]);
    render();
    scrollToNode(u);
  });
}

foldTo(D.open);
render();
window.addEventListener("resize", function () { render(); });
window.l2h = {K: K, render: render, foldTo: foldTo, collapsed: collapsed,
  visibleLeaves: function () { return leavesShown; }, rows: function () { return shown; },
  renderMs: function () { return renderMs; }};
document.body.setAttribute("data-ready", String(performance.now()));
})();
"""
