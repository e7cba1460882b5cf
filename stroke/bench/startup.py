"""Start-up time: a fresh `stroke-train` process, from command start to its first step."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import lightning as L

from stroke.bench.probes import peak_rss_mb

#: What `stroke-train` cannot start without; importing them is the floor of any start-up.
FRAMEWORK_IMPORTS = "import torch, lightning, torchmetrics, timm, albumentations, hydra"


class FirstStepTimer(L.Callback):
    """Writes the wall-clock time at which the first training batch starts, then stops the run.

    Added to a `stroke-train` command by `stroke-bench` (`+callbacks.first_step=...`); the
    process exits at once (SystemExit(0)), after Lightning's teardown stops its workers.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        reached = time.time()
        marker = {"first_step": reached, "peak_rss_mb": peak_rss_mb()}
        self.path.write_text(json.dumps(marker))
        raise SystemExit(0)


def time_to_first_step(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """Seconds from launching `stroke-train <overrides>` to the start of its first training
    step (`seconds`), and that process's peak resident memory until then (`peak_rss_mb`)."""
    marker = run_dir / "first_step.json"
    marker.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "stroke.cli.train",
        *overrides,
        "test=false",
        f"hydra.run.dir={run_dir}",
        f"+callbacks.first_step._target_={FirstStepTimer.__module__}.{FirstStepTimer.__name__}",
        f"+callbacks.first_step.path={marker}",
    ]
    launched = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if not marker.is_file():
        raise RuntimeError(
            f"`{' '.join(cmd)}` ended (exit {result.returncode}) before its first training step:\n"
            f"{result.stderr[-3000:]}"
        )
    reached = json.loads(marker.read_text())
    return {"seconds": reached["first_step"] - launched, "peak_rss_mb": reached["peak_rss_mb"]}


def import_seconds(statement: str = FRAMEWORK_IMPORTS) -> float:
    """Seconds a fresh interpreter takes to run `statement` (interpreter start included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started
