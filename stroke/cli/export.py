"""`stroke-export ckpt_path=... format=onnx`: an ONNX model checked against PyTorch
(the outputs the checkpoint's task names: a classifier's logits, a segmenter's mask logits
and, when joint, class logits)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from stroke.checkpoint import read_checkpoint
from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.inference.onnx_export import export_onnx, max_abs_difference
from stroke.tasks.registry import task_of
from stroke.warnings_filter import quiet_third_party_warnings

FORMATS = ("onnx",)


def export_checkpoint(cfg: DictConfig) -> tuple[Path, float]:
    """Export the checkpoint's backbone; returns (file, max |PyTorch - ONNX Runtime|)."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r}; expected one of {FORMATS}")
    path = Path(str(cfg.ckpt_path)).expanduser()
    checkpoint = read_checkpoint(path)
    task = task_of(checkpoint, path)
    model = task.load(path, checkpoint)
    metadata = model.metadata()
    outputs = task.onnx_outputs(model)
    preprocessing = model.preprocessing
    image_size = cfg.image_size or (preprocessing.image_size if preprocessing else None)
    if image_size is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} records no image size (older checkpoint without its "
            "run directory); give image_size="
        )
    output = Path(cfg.output_path) if cfg.output_path else model.path.with_suffix(".onnx")
    metadata["image_size"] = int(image_size)
    size = int(image_size)
    export_onnx(model.net, output, model.input_channels, size, metadata, cfg.opset, outputs)
    difference = max_abs_difference(model.net, output, model.input_channels, size)
    return output, difference


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-export`; fails when the parity check does."""
    quiet_third_party_warnings()
    output, difference = export_checkpoint(cfg)
    print(f"exported: {output}")
    print(f"max abs difference vs PyTorch: {difference:.3e} (atol {cfg.atol:g})")
    if difference > cfg.atol:
        raise SystemExit(
            f"ONNX Runtime output differs from PyTorch by {difference:.3e} > {cfg.atol}"
        )


if __name__ == "__main__":
    main()
