"""`stroke-export ckpt_path=... format=onnx`: an ONNX model checked against PyTorch
(a classifier's logits, or a segmenter's mask logits and, when joint, class logits)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.inference.checkpoint import checkpoint_task, load_classifier, read_checkpoint
from stroke.inference.onnx_export import OUTPUT_NAME, export_onnx, max_abs_difference
from stroke.warnings_filter import quiet_third_party_warnings

FORMATS = ("onnx",)


def export_checkpoint(cfg: DictConfig) -> tuple[Path, float]:
    """Export the checkpoint's backbone; returns (file, max |PyTorch - ONNX Runtime|)."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r}; expected one of {FORMATS}")
    if checkpoint_task(read_checkpoint(cfg.ckpt_path)) == "segmentation":
        from stroke.segmentation.checkpoint import load_segmenter

        model = load_segmenter(cfg.ckpt_path)
        metadata = model.metadata()
        # one output per head: the masks' logits, and a joint model's class logits
        outputs = ["masks", "logits"] if model.joint else ["masks"]
    else:
        model = load_classifier(cfg.ckpt_path)
        metadata = {"class_names": model.class_names, "backbone": model.backbone.get("name")}
        if model.preprocessing is not None:
            metadata.update(model.preprocessing.record())
        outputs = [OUTPUT_NAME]
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
    export_onnx(model.net, output, model.in_chans, size, metadata, cfg.opset, outputs)
    difference = max_abs_difference(model.net, output, model.in_chans, size)
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
