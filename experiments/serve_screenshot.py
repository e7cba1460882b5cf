"""The README's picture of `stroke-serve`: the page after uploading phantom slices.

    python experiments/serve_screenshot.py      # the newest run's best checkpoint (make train)
    python experiments/serve_screenshot.py --ckpt outputs/train/runs/<run>/checkpoints/last.ckpt

Starts `stroke-serve` on a free 127.0.0.1 port, opens its page in headless Chromium
(Debian's, through Playwright), uploads one phantom slice per class through the file
input, and saves the page to docs/images/serve_page.png (downscaled, 256 colours, small).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, latest_checkpoint, start_server  # noqa: E402

from stroke.config import stroke_home  # noqa: E402
from stroke.serve.browser import launch_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def phantom_slices() -> list[Path]:
    """One slice per class folder of the phantom (the middle slice, where lesions show)."""
    root = stroke_home() / "data" / "phantom"
    picks = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "masks"):
        files = sorted(folder.glob("*_s01.png")) or sorted(folder.glob("*.png"))
        picks.extend(files[3:4] or files[:1])
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "serve_page.png")
    parser.add_argument("--width", type=int, default=900, help="width of the saved picture")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    ckpt = args.ckpt or latest_checkpoint()
    files = phantom_slices()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(ckpt, port, Path(tmp), [])
        shot = None
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 850})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-ready=true]")
                page.set_input_files("#file-input", [str(f) for f in files])
                page.wait_for_selector(f"body[data-results='{len(files)}']", timeout=120_000)
                shot = page.screenshot()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=60)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image = image.resize(
        (args.width, round(image.height * args.width / image.width)), Image.LANCZOS
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out} ({args.out.stat().st_size // 1024} kB), checkpoint {ckpt}")


if __name__ == "__main__":
    main()
