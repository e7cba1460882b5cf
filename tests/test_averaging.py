"""Weight averaging (`weight_averaging=ema|swa`): checkpoints hold the average, the test
scores it, and the small-validation warning says what to do about a thin validation split."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from conftest import TINY, compose_train

from stroke.cli.train import train
from stroke.runs.preflight import small_validation_warning


class Snapshots(L.Callback):
    """The model's weights after every optimizer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


def _run(phantom_dir, run_dir, *overrides, snapshots=None):
    cfg = compose_train(
        [
            *TINY,
            f"data.root={phantom_dir}",
            "trainer.max_epochs=2",
            "logger=none",
            "callbacks.gradcam=null",
            "callbacks.model_checkpoint.monitor=null",
            "evaluation.n_boot=10",
            *overrides,
        ],
        run_dir,
    )
    if snapshots is not None:
        import stroke.cli.train as train_module

        build = train_module.build_trainer

        def with_snapshots(cfg, extra_callbacks=(), **kw):
            return build(cfg, extra_callbacks=[*extra_callbacks, snapshots], **kw)

        mp = pytest.MonkeyPatch()
        mp.setattr(train_module, "build_trainer", with_snapshots)
        try:
            return train(cfg)
        finally:
            mp.undo()
    return train(cfg)


def _net_weights(state_dict):
    return {k[len("net.") :]: v for k, v in state_dict.items() if k.startswith("net.")}


def test_swa_checkpoint_holds_the_mean_of_the_steps_from_its_start(phantom_dir, tmp_path):
    snapshots = Snapshots()
    _run(
        phantom_dir,
        tmp_path / "run",
        "weight_averaging=swa",
        "callbacks.weight_averaging.start=1",
        snapshots=snapshots,
    )
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = len(snapshots.steps) // 2
    averaged = snapshots.steps[steps_per_epoch:]  # epoch 1 only: start=1
    saved = _net_weights(ckpt["state_dict"])
    current = _net_weights(ckpt["current_model_state"])
    for name, value in saved.items():
        if not value.is_floating_point():
            continue
        expected = torch.stack([s[name].float() for s in averaged]).mean(0)
        torch.testing.assert_close(value.float(), expected, rtol=1e-4, atol=1e-5)
        # what was being trained is kept apart, for resuming
        torch.testing.assert_close(current[name], snapshots.steps[-1][name])


def test_ema_is_what_the_test_scores(phantom_dir, tmp_path):
    run_dir = tmp_path / "run"
    _run(phantom_dir, run_dir, "weight_averaging=ema", "callbacks.weight_averaging.decay=0.5")
    summary = json.loads((run_dir / "metrics.json").read_text())
    ckpt = torch.load(summary["best_model_path"], weights_only=True)
    saved, current = _net_weights(ckpt["state_dict"]), _net_weights(ckpt["current_model_state"])
    assert any(not torch.equal(saved[k], current[k]) for k in saved)  # an average, not a copy

    # the test split scored with the averaged weights, not those being trained
    from stroke.build import build_datamodule, build_model

    cfg = compose_train([*TINY, f"data.root={phantom_dir}", "logger=none"], tmp_path / "x")
    datamodule = build_datamodule(cfg, augment=False)
    datamodule.setup("test")
    model = build_model(cfg, datamodule)
    losses = {}
    for name, weights in (
        ("averaged", ckpt["state_dict"]),
        ("current", ckpt["current_model_state"]),
    ):
        model.load_state_dict(weights)
        trainer = L.Trainer(logger=False, enable_progress_bar=False, limit_test_batches=2)
        losses[name] = trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/loss"]
    assert summary["metrics"]["test/loss"] == pytest.approx(losses["averaged"], rel=1e-4)
    assert losses["averaged"] != pytest.approx(losses["current"], rel=1e-6)


def test_small_validation_split_is_named():
    from stroke.data.samples import Sample

    samples = [
        Sample(path=f"{i}.png", label="none" if i % 2 else "hemorrhage", patient_id=str(i), split=s)
        for i, s in enumerate(["val"] * 12 + ["train"] * 40)
    ]
    warning = small_validation_warning(samples, ["none", "hemorrhage"], "val/f1")
    assert "6 of class 'none', 6 of class 'hemorrhage'" in warning
    assert "data.fold=0,1,2,3,4" in warning and "weight_averaging=ema" in warning
    assert small_validation_warning(samples, ["none", "hemorrhage"], "train/loss") is None
    many = [
        *samples[:12],
        *[
            Sample(
                path=f"v{i}.png",
                label="none" if i % 2 else "hemorrhage",
                patient_id=f"v{i}",
                split="val",
            )
            for i in range(10)
        ],
    ]
    assert small_validation_warning(many, ["none", "hemorrhage"], "val/f1") is None


def test_the_small_split_warning_names_the_monitor_that_picks_the_checkpoint():
    from omegaconf import OmegaConf

    from stroke.runs.preflight import checkpoint_monitor

    cfg = OmegaConf.create(
        {"monitor": "val/f1", "callbacks": {"model_checkpoint": {"monitor": "${monitor}"}}}
    )
    assert checkpoint_monitor(cfg) == "val/f1"
    cfg.callbacks.model_checkpoint.monitor = "val/loss"
    assert checkpoint_monitor(cfg) == "val/loss"
    cfg.callbacks.model_checkpoint.monitor = None  # the last epoch's weights: nothing picks
    assert checkpoint_monitor(cfg) is None
    cfg.callbacks = {}  # no checkpoint callback at all
    assert checkpoint_monitor(cfg) == "val/f1"
