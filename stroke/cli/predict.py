"""`stroke-predict ckpt_path=... inputs=<file|folder|glob>`: a CSV of class probabilities
(or, for a segmentation checkpoint, lesion areas with a mask and an overlay per image).

Each input gets a row; a file that cannot be read gets its error in the `error` column
and the others carry on. The exit status is 1 when any file failed.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from stroke.config import CONFIG_PATH
from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError
from stroke.hardware import resolve_device, resolve_num_workers
from stroke.inference.checkpoint import checkpoint_task, load_classifier, read_checkpoint
from stroke.inference.onnx_export import read_onnx_metadata
from stroke.inference.predictor import (
    FilePrediction,
    OnnxBackend,
    TorchBackend,
    predict_files,
    resolve_inputs,
)
from stroke.warnings_filter import quiet_third_party_warnings

log = logging.getLogger("stroke.predict")
BACKENDS = ("torch", "onnx")


def _model_description(cfg: DictConfig):
    """(classes, preprocessing, torch classifier or None) from the checkpoint or the ONNX file."""
    classifier = load_classifier(cfg.ckpt_path) if cfg.ckpt_path else None
    if classifier is not None:
        classes, preprocessing = classifier.class_names, classifier.preprocessing
    else:
        metadata = read_onnx_metadata(cfg.onnx_path) or {}
        if not metadata:
            raise ConfigError(
                f"onnx_path={cfg.onnx_path!r} has no stroke metadata (classes, preprocessing); "
                "give ckpt_path= as well"
            )
        classes = list(metadata["class_names"])
        preprocessing = Preprocessing.from_record(metadata)
    overrides = {k: cfg.get(k) for k in ("image_size",) if cfg.get(k) is not None}
    if preprocessing is None:
        if "image_size" not in overrides:
            raise ConfigError(
                f"ckpt_path={cfg.ckpt_path!r} records no preprocessing (an older checkpoint "
                "without its run directory); give image_size= (normalization then defaults "
                "to the datamodule's mean 0.5, std 0.25)"
            )
        preprocessing = Preprocessing(overrides["image_size"], classifier.in_chans)
    elif overrides:
        preprocessing = preprocessing.with_image_size(overrides["image_size"])
    return classes, preprocessing, classifier


def _task(cfg: DictConfig) -> str:
    """The checkpoint's task from its hyper-parameters, else the ONNX file's metadata."""
    if cfg.ckpt_path:
        return checkpoint_task(read_checkpoint(cfg.ckpt_path))
    return str((read_onnx_metadata(cfg.onnx_path) or {}).get("task", "classification"))


def _backend(cfg: DictConfig, classifier, device: str):
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"backend={cfg.backend!r}; expected one of {BACKENDS}")
    if cfg.backend == "torch":
        if classifier is None:
            raise ConfigError("backend=torch needs ckpt_path=")
        return TorchBackend(classifier.net, device)
    onnx_path = cfg.onnx_path or str(Path(cfg.ckpt_path).with_suffix(".onnx"))
    return OnnxBackend(onnx_path)


def _decide(probs: np.ndarray, classes: list[str], threshold: float | None) -> int:
    """The argmax, or for a binary task with a threshold: positive when P(positive) >= it."""
    if threshold is None:
        return int(probs.argmax())
    return int(probs[1] >= threshold)


def run_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every input and write the CSV; returns (csv path, files, failures).

    A segmentation checkpoint (or its ONNX export) writes masks and overlays as well.
    """
    if not cfg.ckpt_path and not cfg.onnx_path:
        raise ConfigError("give ckpt_path= (a stroke-train checkpoint) or onnx_path=")
    if _task(cfg) == "segmentation":
        from stroke.segmentation.predict import run_segmentation_prediction

        return run_segmentation_prediction(cfg)
    classes, preprocessing, classifier = _model_description(cfg)
    if cfg.threshold is not None and len(classes) != 2:
        raise ConfigError(
            f"threshold={cfg.threshold} applies to binary tasks; this model has classes {classes}"
        )
    if cfg.explain and classifier is None:
        raise ConfigError("explain=true needs ckpt_path= (Grad-CAM runs on the PyTorch model)")
    device = resolve_device(cfg.device)
    backend = _backend(cfg, classifier, device)
    paths = resolve_inputs(
        OmegaConf.to_object(cfg.inputs) if OmegaConf.is_config(cfg.inputs) else cfg.inputs
    )
    output_csv = Path(cfg.output_csv)
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    explain_dir = Path(cfg.explain_dir) if cfg.explain else None
    failures = 0
    with output_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        header = [
            "path",
            "predicted_class",
            "probability",
            *[f"prob_{c}" for c in classes],
            "error",
        ]
        writer.writerow(header + (["gradcam"] if explain_dir else []))
        batches = predict_files(
            paths,
            preprocessing,
            backend,
            batch_size=cfg.batch_size,
            flip_tta=cfg.tta,
            num_workers=resolve_num_workers(cfg.num_workers),
            keep_images=bool(explain_dir),
            progress=cfg.progress,
        )
        for batch in batches:
            overlays = _explain(batch, classifier, classes, cfg, explain_dir) if explain_dir else {}
            for result in batch:
                if result.error:
                    failures += 1
                    log.warning("%s: %s", result.path, result.error)
                    row = [str(result.path), "", "", *[""] * len(classes), result.error]
                else:
                    k = _decide(result.probs, classes, cfg.threshold)
                    row = [
                        str(result.path),
                        classes[k],
                        f"{result.probs[k]:.6f}",
                        *[f"{p:.6f}" for p in result.probs],
                        "",
                    ]
                writer.writerow(row + ([overlays.get(result.path, "")] if explain_dir else []))
    return output_csv, len(paths), failures


def _explain(batch: list[FilePrediction], classifier, classes, cfg, out_dir: Path) -> dict:
    """Save a Grad-CAM overlay per readable image, for its predicted class."""
    from stroke.explain.gradcam import grad_cams, overlay

    readable = [r for r in batch if not r.error]
    if not readable:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    images = torch.from_numpy(np.stack([r.tensor for r in readable]))
    targets = [_decide(r.probs, classes, cfg.threshold) for r in readable]
    cams = grad_cams(classifier.net, images, targets, cfg.target_layer)
    saved = {}
    for result, cam, k in zip(readable, cams, targets, strict=True):
        path = out_dir / f"{result.path.stem}_{classes[k]}.png"
        suffix = 1
        while path.exists():  # same file names in different folders
            path = out_dir / f"{result.path.stem}_{classes[k]}_{suffix}.png"
            suffix += 1
        Image.fromarray(overlay(result.image, cam)).save(path)
        saved[result.path] = str(path)
    return saved


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-predict`; exits with status 1 when any input failed."""
    quiet_third_party_warnings()
    output_csv, total, failures = run_prediction(cfg)
    print(f"predictions: {output_csv} ({total - failures} of {total} files predicted)")
    if failures:
        raise SystemExit(f"{failures} of {total} files could not be read; see the error column")


if __name__ == "__main__":
    main()
