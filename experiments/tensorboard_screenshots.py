"""Screenshots of TensorBoard on a real sweep: the runs list with scalars, and the HPARAMS table.

    python experiments/tensorboard_screenshots.py                      # a tiny 4-trial grid first
    python experiments/tensorboard_screenshots.py --sweep outputs/train/multiruns/<date>_<time>

The grid is `stroke-train -m model.optimizer.lr=1e-3,3e-3 data.batch_size=8,16` (the default
resnet10t, 6 epochs) on a 60-patient phantom at 48 px (a few minutes on 2 CPU cores).
TensorBoard serves the sweep on a free 127.0.0.1 port, headless Chromium opens it, and the
pictures go to docs/images/
(tensorboard_runs.png, tensorboard_hparams.png); then TensorBoard is stopped.

Needs Playwright's Python package (`pip install playwright`) and Debian's Chromium
(`apt-get install -y chromium`): Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1400, "height": 700}
# TensorBoard's own saved settings: a runs list wide enough for the names, no settings pane
TENSORBOARD_SETTINGS = {"sideBarWidthInPercent": 36, "timeSeriesSettingsPaneOpened": False}
# a small phantom at 48 px, six epochs: curves that learn, in a few minutes on 2 CPU cores
TINY_SWEEP = [
    "model.optimizer.lr=1e-3,3e-3",
    "data.batch_size=8,16",
    "data.image_size=48",
    "data.num_workers=0",
    "trainer.max_epochs=6",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.log_every_n_steps=1",
    "evaluation.n_boot=20",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
    "~callbacks.gradcam",
]


def parse_args() -> argparse.Namespace:
    """Command-line options: an existing sweep, or where to run a new one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, help="an existing multirun or study directory")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "tensorboard_screenshots")
    parser.add_argument("--images", type=Path, default=REPO / "docs" / "images")
    return parser.parse_args()


def run_sweep(work: Path) -> Path:
    """Generate the phantom and run the 4-trial grid; the sweep directory."""
    phantom, sweep = work / "phantom", work / "sweep"
    python = [sys.executable, "-m"]
    synth = ["stroke.cli.synth", "n_patients=60", "slices_per_patient=2", "image_size=48"]
    subprocess.run([*python, *synth, f"out_dir={phantom}"], cwd=REPO, check=True)
    train = ["stroke.cli.train", "-m", f"data.root={phantom}", *TINY_SWEEP]
    train.append(f"hydra.sweep.dir={sweep}")
    print(f"sweep: {' '.join(train)}", flush=True)
    subprocess.run([*python, *train], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return sweep


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def tensorboard(logdir: Path, expected_runs: int):
    """TensorBoard serving `logdir` on 127.0.0.1; yields its URL once every run is loaded."""
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--reload_interval", "2"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_runs(url, expected_runs)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for_runs(url: str, expected: int, timeout: float = 120) -> None:
    """Poll TensorBoard until it lists `expected` runs (it loads event files lazily)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as reply:
                if len(json.load(reply)) >= expected:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"TensorBoard at {url} did not list {expected} runs in {timeout:.0f} s")


def screenshot(page, url: str, path: Path, ready: str) -> None:
    """Open `url`, wait for the text `ready` and the charts to settle, save a small PNG."""
    page.goto(url)
    page.get_by_text(ready).first.wait_for(timeout=60_000)
    page.wait_for_timeout(4000)  # charts draw after their data arrives
    page.screenshot(path=str(path))
    shrink_png(path)
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def shrink_png(path: Path) -> None:
    """A 256-colour palette: a few times smaller, nothing lost a reader would see."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def take_screenshots(url: str, images: Path, first_swept_column: str) -> None:
    """The runs list with the loss curves, and the HPARAMS table."""
    from playwright.sync_api import sync_playwright

    from stroke.serve.browser import launch_chromium

    images.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        settings = json.dumps(TENSORBOARD_SETTINGS)
        page.add_init_script(f"localStorage.setItem('_tb_global_settings', '{settings}')")
        runs = f"{url}/?darkMode=false&tagFilter=(train%7Cval)%2Floss#timeseries"
        screenshot(page, runs, images / "tensorboard_runs.png", "tensorboard")
        hparams = f"{url}/?darkMode=false#hparams"
        screenshot(page, hparams, images / "tensorboard_hparams.png", first_swept_column)
        browser.close()


def main() -> None:
    """Run (or take) the sweep, serve it, photograph it."""
    args = parse_args()
    sweep = args.sweep or run_sweep(args.work)
    runs = sorted(sweep.glob("*/tensorboard/*/"))
    if not runs:
        raise SystemExit(f"no TensorBoard runs under {sweep}/*/tensorboard/")
    print("runs:", *(str(run.relative_to(sweep)) for run in runs), sep="\n  ")
    # a column every trial shows first: the first swept key of the first run's name
    first_swept = runs[0].name.split(",")[0].split("=")[0].lstrip("+~").replace(".", "/")
    with tensorboard(sweep, len(runs)) as url:
        take_screenshots(url, args.images, first_swept)


if __name__ == "__main__":
    main()
