"""`stroke-bench` end to end on a tiny phantom, and the speed settings it measures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import TINY, compose_train
from hydra.utils import instantiate

from stroke.errors import ConfigError
from stroke.performance import PerformanceTuning, auto_precision, tune_module


def test_precision_follows_the_hardware(monkeypatch, tmp_path):
    assert auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compose_train([], tmp_path).trainer.precision == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: True)
    assert compose_train([], tmp_path).trainer.precision == "bf16-mixed"
    assert compose_train(["trainer=gpu"], tmp_path).trainer.precision == "bf16-mixed"
    assert compose_train(["trainer=cpu"], tmp_path).trainer.precision == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    assert compose_train(["trainer=gpu"], tmp_path).trainer.precision == "16-mixed"


def test_channels_last_and_compile_keep_checkpoint_names(phantom_dir, tmp_path):
    cfg = compose_train([*TINY, f"data.root={phantom_dir}"], tmp_path)
    model = instantiate(cfg.model, num_classes=3, class_names=["a", "b", "c"])
    names = set(model.state_dict())
    tune_module(model.net, torch.device("cpu"), channels_last=True, compile=True)
    conv = model.net.features[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert set(model.state_dict()) == names  # in-place compile: checkpoints load either way
    tune_module(model.net, torch.device("cpu"), channels_last="auto")
    with pytest.raises(ConfigError, match="channels_last must be auto, true or false"):
        PerformanceTuning(channels_last="yes")


@pytest.mark.slow
def test_bench_prints_every_figure(phantom_dir, tmp_path):
    run_dir = tmp_path / "bench"
    cmd = [
        sys.executable, "-m", "stroke.bench", *TINY, f"data.root={phantom_dir}",
        "bench.warmup_steps=1", "bench.steps=2", "bench.repeats=1", "bench.loader_batches=2",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for measure in (
        "loader: raw files",
        "loader: image cache",
        "train: plain PyTorch loop, tensors in memory",
        "train: stroke-train loop, tensors in memory",
        "train: stroke-train loop, cached loader",
        "start-up: `stroke-train` to its first training step",
        "peak RSS: this process",
    ):
        assert f"| {measure} |" in result.stdout
    figures = json.loads((run_dir / "bench.json").read_text())
    assert figures["framework_ratio"] > 0 and figures["loader_ratio"] > 0
    assert 0 < figures["startup_s"] < 600
    assert figures["command"].startswith("stroke-bench ")
    # the start-up run trained with the benchmark's experiment overrides, not its own
    startup_cfg = (run_dir / "startup" / ".hydra" / "overrides.yaml").read_text()
    assert "data.image_size=32" in startup_cfg and "bench.steps" not in startup_cfg
