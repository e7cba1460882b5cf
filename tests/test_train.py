"""The real entry point end to end on a tiny phantom: what `make train` does, shrunk."""

from __future__ import annotations

import json

import torch
from conftest import TINY, compose_train, run_module

from stroke.cli.train import train


def test_train_writes_a_complete_run_directory(phantom_dir, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train([*TINY, f"data.root={phantom_dir}", "trainer.max_epochs=2"], run_dir)
    metrics = train(cfg)

    assert list((run_dir / "tensorboard").glob("*/events.out.tfevents.*"))  # <run name>/
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "splits.csv").is_file()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= summary["metrics"]["test/accuracy"] <= 1.0
    assert summary["metrics"]["test/accuracy"] == metrics["test/accuracy"]
    assert summary["classes"] == ["normal", "hemorrhagic", "ischemic"]
    assert {"test/f1", "test/roc_auc", "test/precision", "test/recall", "test/f1/ischemic"} <= set(
        summary["metrics"]
    )
    # the test ran on the best checkpoint, which exists
    assert summary["best_model_path"].endswith(".ckpt")


def test_resume_from_last_checkpoint_continues_the_epoch_count(phantom_dir, tmp_path):
    first = tmp_path / "first"
    train(
        compose_train(
            [*TINY, f"data.root={phantom_dir}", "trainer.max_epochs=2", "test=false"], first
        )
    )
    last = first / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1  # epochs 0 and 1 done

    second = tmp_path / "second"
    cfg = compose_train(
        [
            *TINY,
            f"data.root={phantom_dir}",
            "trainer.max_epochs=4",
            "test=false",
            f"ckpt_path={last}",
        ],
        second,
    )
    train(cfg)
    resumed = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3  # continued with epochs 2 and 3, not from 0
    assert json.loads((second / "metrics.json").read_text())["epochs"] == 4


def test_class_weighting_uses_training_counts(phantom_dir, tmp_path):
    cfg = compose_train(
        [
            *TINY,
            f"data.root={phantom_dir}",
            "experiment=stroke_vs_normal",
            "train=false",
            "test=false",
        ],
        tmp_path,
    )
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(
        cfg.model, num_classes=2, class_names=dm.class_names, class_counts=dm.class_counts()
    )
    weights = model.criterion.weight
    normal, stroke = dm.class_counts()
    assert stroke > normal  # two classes merged into one
    assert weights[0] > weights[1]
    torch.testing.assert_close(weights[0] / weights[1], torch.tensor(stroke / normal))


def test_cli_runs_with_hydra_overrides(phantom_dir, tmp_path):
    """`stroke-train key=value ...` as a user types it: Hydra run dir, printed at the end."""
    run_dir = tmp_path / "cli_run"
    result = run_module(
        "stroke.cli.train",
        *TINY,
        f"data.root={phantom_dir}",
        "model=cnn_small",
        f"hydra.run.dir={run_dir}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run directory: {run_dir}" in result.stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "metrics.json").is_file()


def test_bad_backbone_name_fails_before_training(phantom_dir, tmp_path):
    result = run_module(
        "stroke.cli.train",
        *TINY,
        f"data.root={phantom_dir}",
        "model=timm",
        "model.backbone.name=resnet_nope",
        f"hydra.run.dir={tmp_path}",
        timeout=300,
    )
    assert result.returncode != 0
    assert "unknown backbone model.backbone.name='resnet_nope'" in result.stderr


def test_training_without_any_logger(phantom_dir, tmp_path):
    cfg = compose_train([*TINY, f"data.root={phantom_dir}", "logger=none", "test=false"], tmp_path)
    train(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
