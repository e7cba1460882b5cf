"""The README's picture: stroke-predict's overlays of test slices of a lesion_segmentation run.

    python experiments/segmentation_overlays.py outputs/lesion_segmentation/runs/<date>_<time>

Takes the run's best checkpoint and, from its test split (`splits.csv`), the middle slice
of the first hemorrhagic, ischemic and normal patient; runs `stroke-predict` on them and
puts the three overlays side by side in docs/images/segmentation_overlays.png.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "segmentation_overlays.png"
LABELS = ("hemorrhagic", "ischemic", "normal")


def test_slices(run_dir: Path) -> list[Path]:
    """The middle slice (`_s01`) of the first test patient of each label."""
    with (run_dir / "splits.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test" and "_s01" in r["path"]]
    return [Path(next(r["path"] for r in rows if r["label"] == label)) for label in LABELS]


def main(run_dir: Path) -> None:
    checkpoint = json.loads((run_dir / "metrics.json").read_text())["best_model_path"]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        for index, path in enumerate(test_slices(run_dir)):  # in LABELS order
            (inputs / f"{index}_{path.name}").write_bytes(path.read_bytes())
        command = [
            sys.executable,
            "-m",
            "stroke.cli.predict",
            f"ckpt_path={checkpoint}",
            f"inputs={inputs}",
            f"hydra.run.dir={tmp}/predict",
            "progress=false",
        ]
        subprocess.run(command, check=True)
        overlays = sorted((Path(tmp) / "predict" / "overlays").glob("*.png"))
        images = [Image.open(p).convert("RGB") for p in overlays]
        gap = 4
        width = sum(i.width for i in images) + gap * (len(images) - 1)
        montage = Image.new("RGB", (width, max(i.height for i in images)), "white")
        x = 0
        for image in images:
            montage.paste(image, (x, 0))
            x += image.width + gap
        OUT.parent.mkdir(parents=True, exist_ok=True)
        montage.save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
