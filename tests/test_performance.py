"""Speed settings: precision and memory format follow the hardware; logging stays cheap."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import TINY, compose_train
from hydra.utils import instantiate

from stroke.errors import ConfigError
from stroke.hardware import auto_precision
from stroke.performance import PerformanceTuning, tune_module


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
    conv = next(p for p in model.net.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert set(model.state_dict()) == names  # in-place compile: checkpoints load either way
    tune_module(model.net, torch.device("cpu"), channels_last="auto")
    with pytest.raises(ConfigError, match="channels_last must be auto, true or false"):
        PerformanceTuning(channels_last="yes")


def test_training_loss_and_accuracy_are_exact_epoch_means(phantom_dir, tmp_path):
    """Summed on the device instead of logged each step, they still weigh every image once."""
    # 7 per batch leaves a short last batch of several images (a single one would be dropped)
    cfg = compose_train([*TINY, f"data.root={phantom_dir}", "data.batch_size=7"], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model, num_classes=dm.num_classes, class_names=dm.class_names)
    seen: list[tuple[float, int]] = []

    class RecordLosses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((float(outputs["loss"]), len(batch[1])))

    trainer = L.Trainer(
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        callbacks=[RecordLosses()],
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    sizes = {n for _, n in seen}
    assert len(sizes) > 1  # a short last batch: a mean of batch means would be wrong
    expected = sum(loss * n for loss, n in seen) / sum(n for _, n in seen)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= float(trainer.callback_metrics["train/accuracy"]) <= 1.0
    assert "train_sums" not in model.state_dict()  # checkpoints keep their keys


def test_a_training_step_reads_nothing_back_from_the_device(phantom_dir, tmp_path, monkeypatch):
    """`.item()`, `bool()` or `.tolist()` on a GPU tensor waits for the GPU: a training step of
    the module and the configured callbacks must not, or the CPU stops running ahead."""
    import traceback

    from stroke.build import instantiate_dict

    cfg = compose_train([*TINY, f"data.root={phantom_dir}"], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model, num_classes=dm.num_classes, class_names=dm.class_names)
    reads: list[str] = []
    inside_step = [False]

    def recording(name, original):
        def read(tensor, *args):
            if inside_step[0]:
                caller = traceback.extract_stack(limit=2)[0]
                # Adam's CPU path reads its step counter; on a GPU that counter lives on the CPU
                if "torch/optim" not in caller.filename:
                    reads.append(f"{name} at {caller.filename}:{caller.lineno}")
            return original(tensor, *args)

        return read

    for name in ("item", "tolist", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, recording(name, getattr(torch.Tensor, name)))

    class MidEpoch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            inside_step[0] = trainer.current_epoch > 0  # after the first epoch's metrics exist

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            inside_step[0] = False

    callbacks = [*instantiate_dict(cfg.callbacks), MidEpoch()]
    logger = instantiate_dict(cfg.logger)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, max_epochs=2)
    trainer.fit(model, datamodule=dm)
    assert trainer.current_epoch == 2
    assert reads == []
