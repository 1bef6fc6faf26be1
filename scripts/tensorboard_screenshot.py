"""See the tree's TensorBoard card as a user sees it: an event file, a local TensorBoard, headless Chromium screenshots.

Writes a small run (CIFAR-100's 100 class names and 20 superclasses, synthetic logits, so no download) with the
card image (`plot_tree_card`, its 3 most surprising merges marked), the full dendrogram as a second image and DP/LHD
scalars, all at one step; starts
TensorBoard on 127.0.0.1 at a free port; takes screenshots of the Images tab and of the Time Series tab; stops
TensorBoard. Look at the PNGs it prints.

    python scripts/tensorboard_screenshot.py --out l2h_out/tb_screenshot
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cifar100_taxonomy() -> tuple[list[str], list[str], list[int]]:
    """Fine names, superclass names, and each fine class's superclass, from examples/cifar100.py."""
    spec = importlib.util.spec_from_file_location("cifar100_example", ROOT / "examples" / "cifar100.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fine = list(module.FINE_NAMES)
    coarse = list(module.COARSE_NAMES)
    coarse_of = {name: c for c, names in enumerate(module.SUPERCLASSES.values()) for name in names}
    return fine, [c.replace("_", " ") for c in coarse], [coarse_of[name] for name in fine]


def synthetic_logits(
    coarse: list[int], per_class: int, seed: int, superclass: float = 1.6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a half-trained classifier: its class and, more weakly (`superclass`), its superclass stand out."""
    g = torch.Generator().manual_seed(seed)
    K = len(coarse)
    y = torch.arange(K).repeat_interleave(per_class)
    same_super = torch.tensor(coarse)[:, None] == torch.tensor(coarse)[None, :]
    logits = 1.5 * torch.randn(len(y), K, generator=g) + 3.0 * torch.eye(K)[y] + superclass * same_super[y].float()
    return logits, y


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read()
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"TensorBoard did not answer {url} within {seconds:.0f} s") from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from l2h_lightning import Hierarchy, l2h
    from l2h_lightning.explain.surprises import surprising_merges
    from l2h_lightning.metrics.functional import dendrogram_purity, lca_height_distance
    from l2h_lightning.views import figure_to_array, plot_dendrogram, plot_tree_card

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("l2h_out/tb_screenshot"))
    parser.add_argument("--size", default="1400,1000", help="browser window, width,height in px")
    parser.add_argument("--step", type=int, default=756)
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install -y chromium")

    fine, coarse_names, coarse = cifar100_taxonomy()
    logits, y = synthetic_logits(coarse, per_class=40, seed=0)
    tree = l2h(logits)
    truth = Hierarchy.from_levels([coarse])
    dp = float(dendrogram_purity(tree, logits, y))
    lhd = float(lca_height_distance(tree, logits, y, truth))
    title = f"L2H tree · epoch 3 · step {args.step} · DP {dp:.3f} · LHD {lhd:.3f}"
    marks = surprising_merges(tree, truth, names=fine, group_names=coarse_names, top=3)

    run = args.out / "logs"
    if run.exists():
        shutil.rmtree(run)
    started = time.perf_counter()
    card, _ = plot_tree_card(tree, fine, coarse, group_names=coarse_names, title=title, highlight=marks)
    card_image = figure_to_array(card)
    card_s = time.perf_counter() - started
    full, _ = plot_dendrogram(tree, fine, coarse, group_names=coarse_names, title=title, highlight=marks)
    full_image = figure_to_array(full)
    with SummaryWriter(str(run)) as writer:
        writer.add_scalar("l2h/dendrogram_purity", dp, args.step)
        writer.add_scalar("l2h/lca_height_distance", lhd, args.step)
        writer.add_image("l2h/tree", card_image, args.step, dataformats="HWC")
        writer.add_image("l2h/tree_full", full_image, args.step, dataformats="HWC")
    print(f"card {card_image.shape[1]}x{card_image.shape[0]} px in {card_s:.2f} s; "
          f"full tree {full_image.shape[1]}x{full_image.shape[0]} px")

    port = free_port()
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while b"l2h/tree" not in wait_for(f"{base}/data/plugin/images/tags", 60):
            if time.monotonic() > deadline:
                raise RuntimeError("TensorBoard never listed the image tag l2h/tree")
            time.sleep(1)
        for tab in ("images", "timeseries"):
            shot = (args.out / f"tensorboard_{tab}.png").resolve()
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--screenshot={shot}", f"--window-size={args.size}", "--virtual-time-budget=15000",
                 f"{base}/#{tab}"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
            )
            print(shot)
    finally:
        board.terminate()
        board.wait(timeout=30)


if __name__ == "__main__":
    main()
