"""`stroke-bench bench.mode=timm|loader`: the yardsticks and the table rows they give."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, run_module

from stroke.bench.compare import PEAK_TFLOPS, peak_tflops, timm_method_loop, training_flops
from stroke.models.factory import create_model


@pytest.mark.slow
def test_flops_of_a_training_image_are_those_of_the_network():
    net = create_model("resnet18", num_classes=3, in_chans=3)
    # resnet18 at 224 px: 1.82 GMACs forward, so about 3 x 3.63 GFLOP with the backward
    assert training_flops(net, 3, 224) / 1e9 == pytest.approx(10.65, rel=0.01)


def test_timm_method_times_every_step_after_warm_up():
    net = create_model("cnn_small", num_classes=2, in_chans=1)
    timing = timm_method_loop(net, 2, (4, 1, 32, 32), torch.device("cpu"), "32-true", False, 1, 3)
    assert timing.step_images == [4, 4, 4] and all(s > 0 for s in timing.step_seconds)


def test_peaks_are_known_by_device_name(monkeypatch):
    assert peak_tflops(torch.device("cpu"), "bf16-mixed") == (None, "CPU")
    for name, expected in (("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0),
                           ("NVIDIA A10", 125.0), ("NVIDIA GeForce GTX 1080", None)):  # fmt: skip
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert peak_tflops(torch.device("cuda"), "bf16-mixed") == (expected, name)
    assert peak_tflops(torch.device("cuda"), "32-true")[0] is None  # the GTX: unknown
    assert PEAK_TFLOPS["H100"][1] < PEAK_TFLOPS["H100"][0]  # tf32 below bf16


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "rows"),
    [
        ("timm", ["train: timm's benchmark method", "train: stroke-train loop, tensors in memory",
                  "model: FLOPs per training image", "model FLOP rate, stroke-train in memory"]),
        ("loader", ["loader ceiling: 0 workers", "loader ceiling: 1 workers"]),
    ],
)  # fmt: skip
def test_bench_modes_print_their_rows(mode, rows, phantom_dir, tmp_path):
    run_dir = tmp_path / mode
    result = run_module(
        "stroke.cli.bench",
        *[o for o in TINY if not o.startswith("data.batch_size")], "data.batch_size=5",
        f"data.root={phantom_dir}", f"bench.mode={mode}", "bench.workers=[0,1]",
        "bench.warmup_steps=1", "bench.steps=2", "bench.repeats=1", "bench.loader_batches=2",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for row in rows:
        assert f"| {row} |" in result.stdout
    figures = json.loads((run_dir / "bench.json").read_text())
    if mode == "timm":
        assert figures["timm_ratio_memory"] > 0 and figures["train_gflop_per_img"] > 0


@pytest.mark.slow
def test_an_unknown_mode_is_named(phantom_dir, tmp_path):
    result = run_module("stroke.cli.bench", *TINY, f"data.root={phantom_dir}", "bench.mode=fast",
                        f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode != 0 and "bench.mode must be one of" in result.stderr
