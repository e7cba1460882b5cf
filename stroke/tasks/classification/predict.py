"""`stroke-predict` on a classifier (one checkpoint, a fold ensemble or its ONNX export): a CSV
of class probabilities, and Grad-CAM overlays with `explain=true`.

Each input gets a row; a file that cannot be read gets its error in the `error` column and
the others carry on. Files of the input folders that are not predicted (not an image or
DICOM file) are named in `skipped.csv` beside the predictions.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from stroke.data.audit import SKIPPED_CSV, summarize, unused_inputs, write_left_out
from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError
from stroke.hardware import resolve_device, resolve_num_workers
from stroke.inference.consistency import describe
from stroke.inference.onnx_export import read_onnx_metadata
from stroke.inference.predictor import (
    FilePrediction,
    OnnxBackend,
    TorchBackend,
    decide,
    predict_files,
    resolve_inputs,
)
from stroke.io import atomic_write_with, atomic_writer
from stroke.tasks.classification.ensemble import load_ensemble

log = logging.getLogger("stroke.predict")
BACKENDS = ("torch", "onnx")


def _model_description(cfg: DictConfig):
    """(classes, preprocessing, torch classifier or None) from the checkpoint or the ONNX file."""
    classifier = load_ensemble(cfg.ckpt_path) if cfg.ckpt_path else None
    if classifier is not None and classifier.members:
        log.info("ensemble: mean probabilities of %s", [str(p) for p in classifier.members])
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
        preprocessing = Preprocessing(overrides["image_size"], classifier.input_channels)
    elif overrides:
        log.warning(
            "image_size=%s overrides the %s px the model was trained at",
            overrides["image_size"], preprocessing.image_size,
        )  # fmt: skip
        preprocessing = preprocessing.with_image_size(overrides["image_size"])
    log.info("preprocessing: %s", describe(preprocessing))
    if preprocessing.context_slices:
        log.warning(
            "this model reads %d neighbouring slice(s) on each side (data.context_slices); "
            "stroke-predict reads each input alone, as its own neighbours: for the volume's "
            "context score the scans through a data config with stroke-eval",
            preprocessing.context_slices,
        )
    return classes, preprocessing, classifier


def _backend(cfg: DictConfig, classifier, device: str):
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"backend={cfg.backend!r}; expected one of {BACKENDS}")
    if cfg.backend == "torch":
        if classifier is None:
            raise ConfigError("backend=torch needs ckpt_path=")
        return TorchBackend(classifier.net, device)
    if classifier is not None and classifier.members:
        raise ConfigError(
            "backend=onnx reads one exported model; an ensemble runs with backend=torch"
        )
    onnx_path = cfg.onnx_path or str(Path(cfg.ckpt_path).with_suffix(".onnx"))
    return OnnxBackend(onnx_path)


def flip_tta(cfg: DictConfig, classifier) -> bool:
    """`tta=true|false` as given; null: as the run validated the model (`model.tta`)."""
    if cfg.get("tta") is not None:
        return bool(cfg.tta)
    if classifier is not None:
        trained = classifier.tta
    else:
        trained = bool((read_onnx_metadata(cfg.onnx_path) or {}).get("tta", False))
    if trained:
        log.info("flip TTA on, as the run validated this model (model.tta=true; tta=false: off)")
    return trained


def run_classification_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every input and write the CSV; returns (csv path, files, failures)."""
    classes, preprocessing, classifier = _model_description(cfg)
    if cfg.threshold is not None and len(classes) != 2:
        raise ConfigError(
            f"threshold={cfg.threshold} applies to binary tasks; this model has classes {classes}"
        )
    if cfg.explain and classifier is None:
        raise ConfigError("explain=true needs ckpt_path= (Grad-CAM runs on the PyTorch model)")
    if cfg.explain and classifier.members:
        raise ConfigError("explain=true needs one checkpoint (Grad-CAM of one network)")
    device = resolve_device(cfg.device)
    backend = _backend(cfg, classifier, device)
    inputs = OmegaConf.to_object(cfg.inputs) if OmegaConf.is_config(cfg.inputs) else cfg.inputs
    paths = resolve_inputs(inputs)
    output_csv = Path(cfg.output_csv)
    _report_left_out(inputs, paths, output_csv.parent)
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    explain_dir = Path(cfg.explain_dir) if cfg.explain else None
    failures = 0
    with atomic_writer(output_csv, "w", newline="") as fh:
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
            flip_tta=flip_tta(cfg, classifier),
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
                    k = decide(result.probs, cfg.threshold)
                    row = [
                        str(result.path),
                        classes[k],
                        f"{result.probs[k]:.6f}",
                        *[f"{p:.6f}" for p in result.probs],
                        "",
                    ]
                writer.writerow(row + ([overlays.get(result.path, "")] if explain_dir else []))
    return output_csv, len(paths), failures


def _report_left_out(inputs, paths: list[Path], out_dir: Path) -> None:
    """Files in the input folders that are not predicted: counted, named, in skipped.csv."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    folders = [Path(str(i)).expanduser() for i in items if Path(str(i)).expanduser().is_dir()]
    left_out = unused_inputs(folders, paths)
    if write_left_out(left_out, out_dir / SKIPPED_CSV):
        for notable in (True, False):
            line = summarize(left_out, "the input folders", notable)
            if line:
                log.log(logging.WARNING if notable else logging.INFO, "%s", line)


def _explain(batch: list[FilePrediction], classifier, classes, cfg, out_dir: Path) -> dict:
    """Save a Grad-CAM overlay per readable image, for its predicted class."""
    # imported on use: pytorch-grad-cam and OpenCV only when explain=true asks for maps
    from stroke.explain.gradcam import grad_cams, overlay

    readable = [r for r in batch if not r.error]
    if not readable:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    images = torch.from_numpy(np.stack([r.tensor for r in readable]))
    targets = [decide(r.probs, cfg.threshold) for r in readable]
    cams = grad_cams(classifier.net, images, targets, cfg.target_layer)
    saved = {}
    for result, cam, k in zip(readable, cams, targets, strict=True):
        path = out_dir / f"{result.path.stem}_{classes[k]}.png"
        suffix = 1
        while path.exists():  # same file names in different folders
            path = out_dir / f"{result.path.stem}_{classes[k]}_{suffix}.png"
            suffix += 1
        picture = Image.fromarray(overlay(result.image, cam))
        atomic_write_with(path, lambda fh, picture=picture: picture.save(fh, format="PNG"))
        saved[result.path] = str(path)
    return saved
