"""`stroke-bench` end to end on a tiny phantom."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, run_module


@pytest.mark.slow
def test_bench_prints_every_figure(phantom_dir, tmp_path):
    run_dir = tmp_path / "bench"
    result = run_module(
        "stroke.cli.bench",
        # 9 training images: batches of 5 give two (of 8, the last would be a single image,
        # which training drops)
        *[o for o in TINY if not o.startswith("data.batch_size")], "data.batch_size=5",
        f"data.root={phantom_dir}",
        "bench.warmup_steps=1", "bench.steps=2", "bench.repeats=1", "bench.loader_batches=2",
        "bench.overhead_steps=3",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for measure in (
        "loader: raw files",
        "loader: image cache",
        "train: plain PyTorch loop, tensors in memory",
        "train: stroke-train loop, tensors in memory",
        "train: stroke-train loop, cached loader",
        "train: stroke-train's own time per step (trivial network)",
        "start-up: `stroke-train` to its first training step",
        "peak RSS: this benchmark process",
        "peak RSS: `stroke-train` at its first step",
    ):
        assert f"| {measure} |" in result.stdout
    figures = json.loads((run_dir / "bench.json").read_text())
    assert figures["framework_ratio"] > 0 and figures["loader_ratio"] > 0
    assert 0 < figures["startup_s"] < 600
    assert figures["command"].startswith("stroke-bench ")
    # the start-up run trained with the benchmark's experiment overrides, not its own
    startup_cfg = (run_dir / "startup" / ".hydra" / "overrides.yaml").read_text()
    assert "data.image_size=32" in startup_cfg and "bench.steps" not in startup_cfg
