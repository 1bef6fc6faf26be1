"""The explorable HTML tree, in a real headless Chromium driven over the DevTools protocol (stdlib only).

Chromium runs with `--remote-debugging-pipe`: JSON messages on fds 3/4, NUL-terminated. Clicks and key presses
are real input events (Input.dispatchMouseEvent / dispatchKeyEvent), so they go through the browser's hit testing
and the page's own handlers, exactly as a user's would.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from l2h_lightning import Hierarchy
from l2h_lightning.views.html import save_html, to_html

pytestmark = pytest.mark.timeout(120)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium; CI installs it)"
)
WIDTH, HEIGHT = 1400, 1000


# ---------------------------------------------------------------------------------------------- trees
def grouped_tree(K: int, n_groups: int, seed: int = 0) -> tuple[Hierarchy, list[int]]:
    """A random binary tree that first joins each group's leaves, then the groups (leaf i in group i % n_groups)."""
    rng = random.Random(seed)
    groups = [i % n_groups for i in range(K)]
    merges, next_id, tops = [], K, []
    for g in range(n_groups):
        active = [i for i in range(K) if groups[i] == g]
        while len(active) > 1:
            a = active.pop(rng.randrange(len(active)))
            b = active.pop(rng.randrange(len(active)))
            merges.append([a, b])
            active.append(next_id)
            next_id += 1
        tops += active
    while len(tops) > 1:
        a = tops.pop(rng.randrange(len(tops)))
        b = tops.pop(rng.randrange(len(tops)))
        merges.append([a, b])
        tops.append(next_id)
        next_id += 1
    return Hierarchy.from_merges(merges, num_leaves=K), groups


def chain(K: int) -> Hierarchy:
    """((((0,1),2),3),...): depth K-1."""
    return Hierarchy.from_merges([[0, 1]] + [[K + i - 1, i + 1] for i in range(1, K - 1)], num_leaves=K)


GROUP_NAMES = ["animals", "vehicles", "plants", "tools", "food", "music", "sports", "weather"]
TRICKY = ["</script><b>bold</b>", "a & b", 'quote "q" \'s\'', "Ölçü 🐱", "<!-- x"]


def embedded(page: str) -> dict:
    """The JSON the page carries."""
    return json.loads(page.split('id="l2h-data">', 1)[1].split("</script>", 1)[0])


def names_for(K: int) -> list[str]:
    names = [f"{GROUP_NAMES[i % 8]} {i:04d}" for i in range(K)]
    names[1:1 + len(TRICKY)] = TRICKY
    return names


# ---------------------------------------------------------------------------------------------- the browser
class Browser:
    """One headless Chromium; `page()` opens a tab to drive."""

    def __init__(self, profile: Path) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # move the child's ends above 4 so that dup2 onto 3 and 4 cannot clobber one another
        hi_r, hi_w = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.close(to_r)
        os.close(from_w)

        def child_fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
                "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(hi_r)
        os.close(hi_w)
        self._w, self._r, self._buf, self._id, self.events = to_w, from_r, b"", 0, []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for k, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(k)
            self.events.append(self._read(deadline))

    def page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.b, self.s = browser, session
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.bringToFront")  # a background tab records no paint timing

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.b.send(method, params, self.s, timeout)

    def open(self, path: Path) -> float:
        """Load a file offline; returns the seconds from the request to the load event."""
        self.b.events.clear()
        start = time.monotonic()
        self.send("Page.navigate", {"url": path.resolve().as_uri()})
        self.b.wait_event("Page.loadEventFired", self.s)
        return time.monotonic() - start

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.b.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.s]

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def centre(self, selector: str) -> tuple[float, float]:
        """Scroll the element into view; its centre in viewport coordinates."""
        box = self.eval(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: "center", inline: "center"}});
            const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        return box[0], box[1]

    def click(self, selector: str) -> None:
        x, y = self.centre(selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def hover(self, selector: str) -> None:
        x, y = self.centre(selector)
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x - 30, "y": y - 30})
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def wheel(self, x: float, y: float, dy: float) -> None:
        """Scroll with the mouse wheel, then let the page draw two frames."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0, "deltaY": dy})
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def type(self, text: str) -> None:
        self.send("Input.insertText", {"text": text})
        for kind in ("rawKeyDown", "char", "keyUp"):
            params = {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
            if kind == "char":
                params["text"] = "\r"
            self.send("Input.dispatchKeyEvent", params)

    def leaves(self) -> list[str]:
        return self.eval("Array.from(document.querySelectorAll('text.leaf'), t => t.textContent)")

    def first_paint_ms(self) -> float | None:
        """First contentful paint, ms after navigation start (the page draws its tree before any paint)."""
        return self.eval("""new Promise(done => {
            new PerformanceObserver(list => { for (const e of list.getEntries())
                if (e.name === 'first-contentful-paint') done(e.startTime); }).observe({type: 'paint', buffered: true});
            setTimeout(() => done(null), 5000); })""")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium; CI installs it)")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def k1000(tmp_path_factory):
    tree, groups = grouped_tree(1000, 8)
    names = names_for(1000)
    path = save_html(tree, tmp_path_factory.mktemp("html") / "k1000.html", names=names, groups=groups,
                     group_names=GROUP_NAMES, title="K=1,000", metrics={"DP": 0.8123, "LHD": 0.1234})
    return tree, names, groups, path


# ---------------------------------------------------------------------------------------------- browser tests
@needs_chromium
def test_k1000_offline_small_fast_and_every_name_in_the_dom(browser, k1000):
    tree, names, groups, path = k1000
    assert path.stat().st_size <= 2_000_000
    page = browser.page()
    seconds = page.open(path)
    paint = page.first_paint_ms()
    assert paint is not None and paint <= 3000, paint
    assert seconds <= 3, seconds
    urls = page.requested_urls()
    assert urls and all(u.startswith("file:") for u in urls), urls  # nothing from the network
    assert page.eval("document.title") == "K=1,000"
    # opens folded: the top 30 subtrees, a few leaves only
    assert page.eval("document.querySelectorAll('text.leaf, text.clade').length") == 30
    assert page.eval("window.l2h.visibleLeaves()") < 30
    legend = page.eval("Array.from(document.querySelectorAll('.lg span'), s => s.textContent)")
    assert legend == GROUP_NAMES
    page.click("#expand")
    shown = page.leaves()
    assert sorted(shown) == sorted(names)  # every class, tricky characters intact
    # each leaf's swatch has its group's legend colour
    colours = page.eval("""Array.from(document.querySelectorAll('rect[data-v]'),
        r => [+r.getAttribute('data-v'), r.getAttribute('fill')])""")
    legend_colour = page.eval("Array.from(document.querySelectorAll('.lg i'), i => i.style.background)")
    assert len(colours) == 1000
    hex_of = {g: page.eval(f"(() => {{ const d = document.createElement('div'); d.style.color = "
                           f"{json.dumps(c)}; return d.style.color; }})()") for g, c in enumerate(legend_colour)}
    assert all(page.eval(f"(() => {{ const d = document.createElement('div'); d.style.color = '{fill}'; "
                         f"return d.style.color; }})()") == hex_of[groups[v]] for v, fill in colours[:50])


@needs_chromium
def test_a_click_on_a_node_collapses_its_subtree_and_a_click_on_the_fold_opens_it(browser, k1000):
    tree, names, _, path = k1000
    page = browser.page()
    page.open(path)
    page.click("#expand")
    assert page.eval("window.l2h.visibleLeaves()") == 1000
    sizes = tree.sizes()
    node = next(v for v in range(tree.root - 1, tree.num_leaves, -1) if 20 <= sizes[v] <= 200)
    page.click(f'circle[data-v="{node}"]')
    assert len(page.leaves()) == 1000 - sizes[node]
    hidden = set(names[leaf] for leaf in tree.leaves(node))
    assert hidden.isdisjoint(page.leaves())
    assert page.eval(f"document.querySelector('text.clade[data-v=\"{node}\"]').textContent").startswith(
        str(sizes[node]))
    page.click(f'path.wedge[data-v="{node}"]')
    assert len(page.leaves()) == 1000
    # fold to a level through the controls
    page.eval("document.getElementById('level').value = '12'")
    page.click("#fold")
    rows = page.eval("Array.from(document.querySelectorAll('text.leaf, text.clade'), t => +t.getAttribute('data-v'))")
    cut = tree.cut(12).tolist()  # the fold undoes the last 11 merges: the same 12 groups as cut(12)
    assert sorted(sorted(tree.leaves(v)) for v in rows) == sorted(
        [leaf for leaf in range(1000) if cut[leaf] == g] for g in range(12))


@needs_chromium
def test_search_highlights_and_opens_the_way_to_matches(browser, k1000):
    tree, names, _, path = k1000
    page = browser.page()
    page.open(path)
    target = 777
    assert names[target] not in page.leaves()  # folded away at first
    page.click("#q")
    page.type(names[target])
    assert names[target] in page.leaves()
    assert page.eval("Array.from(document.querySelectorAll('text.leaf.hit'), t => t.textContent)") == [names[target]]
    assert page.eval("document.getElementById('found').textContent") == "1 match"
    page.eval("document.getElementById('q').value = ''")
    page.click("#q")
    page.type("no such class")
    assert page.eval("document.getElementById('found').textContent") == "no match"
    page.eval("document.getElementById('q').value = ''")
    page.click("#q")
    page.type("</SCRIPT>")  # case-insensitive, and markup in names is text
    assert page.eval("Array.from(document.querySelectorAll('text.leaf.hit'), t => t.textContent)") == [TRICKY[0]]


@needs_chromium
def test_hover_shows_merge_evidence_support_and_surprise(browser, tmp_path):
    K = 6
    merges = [[0, 1], [2, 3], [6, 7], [4, 5], [8, 9]]
    evidence = {
        "score": torch.tensor([0.5, 0.75, 1.25, 1.5, 3.14159], dtype=torch.float64),
        "partner_value": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.25], dtype=torch.float64),
        "runner_up": torch.tensor([2, 4, 4, -1, -1], dtype=torch.int64),
        "runner_up_value": torch.tensor([0.1, 0.2, 0.3, float("nan"), float("nan")], dtype=torch.float64),
        "points": torch.tensor([10.0, 12.0, 30.0, 7.0, 37.0], dtype=torch.float64),
        "mass": torch.tensor([9.0, 9.6, 21.0, 4.2, 9.25], dtype=torch.float64),
    }
    tree = Hierarchy.from_merges(merges, num_leaves=K, evidence=evidence)
    names = ["cat", "dog", "car", "bus", "oak", "elm"]
    path = save_html(tree, tmp_path / "small.html", names=names, groups=[0, 0, 1, 1, 2, 2],
                     group_names=["animals", "vehicles", "plants"], support=torch.tensor([1.0, 0.5, 0.875, 1, 0.25]),
                     surprises=[{"node": 10, "surprise": 2.5, "expected": "animals"}])
    page = browser.page()
    page.open(path)
    assert page.eval("window.l2h.visibleLeaves()") == 6  # small trees open fully
    page.hover('circle[data-v="10"]')
    tip = page.eval("document.getElementById('tip').style.display + '|' + document.getElementById('tip').innerText")
    shown, text = tip.split("|", 1)
    assert shown == "block"
    for phrase in ("node 10 \u00b7 merge 5 of 5 \u00b7 6 classes", "selected group\tnode 8 (4 classes: cat, dog, car",
                   "partner\tnode 9 (2 classes: oak, elm)", "S(G*) of the selected group\t3.142",
                   "A(H\u2020)\t0.25", "points reassigned\t37", "mass moved to the partner\t9.25",
                   "runner-up partner\tnone", "runner-up value\t\u2014", "clade support\t0.25", "surprise\t2.5",
                   "expected\tanimals"):
        assert phrase in text, (phrase, text)
    page.hover('circle[data-v="8"]')
    text = page.eval("document.getElementById('tip').innerText")
    assert "runner-up partner\toak" in text and "runner-up value\t0.3" in text and "surprise" not in text
    page.hover('text.leaf[data-v="4"]')
    assert "oak" in page.eval("document.getElementById('tip').innerText")
    assert "plants" in page.eval("document.getElementById('tip').innerText")
    assert page.eval("document.querySelector('#metrics').innerText").startswith("classes")


@needs_chromium
def test_chain_of_10000_renders_folds_and_opens(browser, tmp_path):
    K = 10_000
    path = save_html(chain(K), tmp_path / "chain.html")
    page = browser.page()
    page.open(path)
    assert page.first_paint_ms() <= 3000
    assert page.eval("document.querySelectorAll('text.leaf, text.clade').length") == 30
    page.click("#expand")
    assert page.eval("window.l2h.visibleLeaves()") == K
    assert page.eval("window.l2h.renderMs()") < 3000
    drawn = page.leaves()  # beyond 2,500 rows only the rows around the scrolled-to window are drawn
    assert "0" in drawn and "9999" not in drawn and 50 < len(drawn) < 1000
    for _ in range(40):  # wheel down to the end, as a user would
        page.wheel(800, 500, 20_000)
        if str(K - 1) in page.leaves():
            break
    assert str(K - 1) in page.leaves() and "0" not in page.leaves()
    page.click(f'circle[data-v="{2 * K - 3}"]')  # the root's big child: everything but the last leaf folds
    assert page.leaves() == [str(K - 1)]
    assert page.eval("document.querySelector('text.clade').textContent").startswith(str(K - 1))
    page.click("#q")
    page.type("4242")
    assert "4242" in page.leaves()
    assert page.eval("Array.from(document.querySelectorAll('text.leaf.hit'), t => t.textContent)") == ["4242"]


@needs_chromium
def test_multifurcating_and_single_leaf_trees(browser, tmp_path):
    fine = torch.arange(60) // 3  # 20 triples
    coarse = torch.arange(60) // 15  # 4 groups of 15
    tree = Hierarchy.from_levels([fine, coarse])
    names = [f"c{i}" for i in range(60)]
    page = browser.page()
    page.open(save_html(tree, tmp_path / "levels.html", names=names))
    assert sorted(page.leaves()) == sorted(names)  # 60 <= 2 * 30 leaves: opens fully
    legend = page.eval("Array.from(document.querySelectorAll('.lg span'), s => s.textContent)")
    assert legend == ["group 0", "group 1", "group 2", "group 3"]  # the coarsest level colours the leaves
    top = tree.children[-1][0]  # a 15-class group under the root
    page.click(f'circle[data-v="{top}"]')
    assert len(page.leaves()) == 45
    page.hover(f'circle[data-v="{tree.root}"]')
    text = page.eval("document.getElementById('tip').innerText")
    assert "child 4" in text and "merge evidence\tnot recorded" in text
    page.open(save_html(Hierarchy(1, []), tmp_path / "one.html", names=["only"]))
    assert page.leaves() == ["only"]


# ---------------------------------------------------------------------------------------------- the file itself
def test_page_is_one_self_contained_file():
    tree, groups = grouped_tree(1000, 8)
    page = to_html(tree, names_for(1000), groups, group_names=GROUP_NAMES)
    assert len(page.encode()) <= 2_000_000
    lowered = page.lower()
    for outside in ("<script src", "<link", "@import", "url(", "https://", "fetch(", "xmlhttprequest"):
        assert outside not in lowered, outside
    assert "default-src 'none'" in page  # the browser itself refuses any load
    data = page.split('id="l2h-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    decoded = json.loads(data)
    assert decoded["names"] == names_for(1000) and decoded["ch"] == [list(c) for c in tree.children]


def test_chain_of_10000_in_python_and_multifurcating_trees():
    page = to_html(chain(10_000))
    assert len(page.encode()) < 1_000_000
    tree = Hierarchy.from_levels([torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 0, 0])])
    page = to_html(tree, names=list("abcde"))
    data = embedded(page)
    assert sorted(map(len, data["ch"])) == sorted(map(len, tree.children))
    assert data["groups"] is None or len(data["groups"]) == 5


def test_save_html_writes_utf8_and_makes_folders(tmp_path):
    tree, _ = grouped_tree(10, 2)
    path = save_html(tree, tmp_path / "a" / "b" / "tree.html", names=[f"ünï {i}" for i in range(10)])
    assert path == tmp_path / "a" / "b" / "tree.html"
    assert "ünï 3" in path.read_text(encoding="utf-8")


def test_nan_evidence_and_support_become_null():
    evidence = {"score": torch.tensor([float("nan"), 1.0, 2.0]), "runner_up": torch.tensor([-1, 0, 1])}
    tree = Hierarchy.from_merges([[0, 1], [2, 3], [4, 5]], num_leaves=4, evidence=evidence)
    data = embedded(to_html(tree, support=[float("nan"), 0.5, 1]))
    assert data["ev"] == {"score": [None, 1, 2], "runner_up": [-1, 0, 1]}
    assert data["sup"] == [None, 0.5, 1]


def test_surprising_merges_records_go_straight_in():
    from l2h_lightning.explain import surprising_merges

    tree = Hierarchy.from_merges([[0, 2], [1, 3], [4, 5]], num_leaves=4)  # joins a with c first: against the truth
    truth = Hierarchy.from_levels([[0, 0, 1, 1]])
    records = surprising_merges(tree, truth, names="abcd")
    data = embedded(to_html(tree, names=list("abcd"), surprises=records))
    marked = {r["node"] for r in records if r["surprise"] > 0}
    assert marked and {r["node"] for r in data["sur"]} == marked  # only the surprising ones are marked
    assert all("leaves" not in r and "evidence" not in r for r in data["sur"])
    assert [r["label"] for r in data["sur"]] == [r["label"] for r in records if r["surprise"] > 0]


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"names": ["a", "b"]}, "names has 2 entries; the tree has 4 leaves"),
        ({"names": "abcd"}, "names must be a sequence"),
        ({"groups": [0, 1, 0]}, "groups has 3 entries"),
        ({"groups": [0, 0.5, 1, 1]}, "groups must hold integer ids"),
        ({"groups": [[0, 1], [0, 1]]}, "groups must be one-dimensional"),
        ({"groups": [0, 0, 1, 2], "group_names": ["x", "y"]}, "names no group id 2"),
        ({"group_names": ["x", "y"]}, "group_names needs groups"),
        ({"support": [1.0, 0.5]}, "support must be a (3,) tensor"),
        ({"surprises": [{"node": 1, "surprise": 2.0}]}, "internal node id in 4..6"),
        ({"surprises": [{"node": 5}]}, "surprises[0] must be a dict with 'node' and 'surprise'"),
        ({"surprises": [{"node": 5, "surprise": "high"}]}, "surprises[0]['surprise'] must be a number"),
        ({"surprises": {"node": 5, "surprise": 1.0}}, "surprises must be a list of dicts"),
        ({"metrics": [("DP", 0.5)]}, "metrics must be a mapping"),
        ({"title": 3}, "title must be a string"),
    ],
)
def test_bad_input_is_refused_naming_it(kwargs, phrase):
    tree, _ = grouped_tree(4, 2)
    with pytest.raises(ValueError) as err:
        to_html(tree, **kwargs)
    assert phrase in str(err.value)


def test_not_a_tree():
    with pytest.raises(ValueError, match="tree must be a Hierarchy"):
        to_html([[0, 1]])
