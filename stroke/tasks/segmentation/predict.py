"""`stroke-predict` on a segmentation checkpoint (or its ONNX export): masks, overlays, areas.

Per input image: a mask PNG (palette PNG whose pixel values are the class indices:
0 background, k the k-th lesion class; viewers show it in colour) and an overlay PNG, both
at the image's own size, and a row of `predictions.csv` with the lesion area in pixels
(and mm² when the file gives its pixel spacing, as DICOM does), per lesion class, and for
a joint model the class probabilities. Per NIfTI volume: a NIfTI mask of its geometry,
the overlay of its slice with the most lesion, and its lesion volume in mL. A file that
cannot be read gets its error in the `error` column; the others carry on.
"""

from __future__ import annotations

import csv
import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from stroke.data.nifti import (
    volume_stem,
)
from stroke.data.preprocessing import Preprocessing
from stroke.data.readers import format_of
from stroke.errors import ConfigError
from stroke.evaluation.overlay import CLASS_COLORS, mask_overlay
from stroke.hardware import resolve_device, resolve_num_workers
from stroke.inference.onnx_export import read_onnx_metadata
from stroke.inference.predictor import resolve_inputs
from stroke.io import atomic_write_bytes, atomic_write_with, atomic_writer
from stroke.tasks.segmentation.checkpoint import load_segmenter
from stroke.tasks.segmentation.inference import (
    MaskPrediction,
    OnnxSegmentationBackend,
    TorchSegmentationBackend,
    VolumePrediction,
    predict_masks,
    predict_volume,
)

log = logging.getLogger("stroke.predict")


@dataclass
class SegmenterDescription:
    """What prediction needs of a segmenter, from its checkpoint or its ONNX metadata."""

    lesion_classes: list[str]
    class_names: list[str]
    joint: bool
    preprocessing: Preprocessing


def describe_model(cfg: DictConfig, segmenter) -> SegmenterDescription:
    """Classes and preprocessing from the loaded checkpoint, else from the ONNX metadata."""

    if segmenter is not None:
        preprocessing = segmenter.preprocessing
        described = SegmenterDescription(
            segmenter.lesion_classes, segmenter.class_names, segmenter.joint, preprocessing
        )
    else:
        metadata = read_onnx_metadata(cfg.onnx_path) or {}
        described = SegmenterDescription(
            list(metadata["lesion_classes"]),
            list(metadata["class_names"]),
            bool(metadata["joint"]),
            Preprocessing.from_record(metadata),
        )
    if described.preprocessing is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} records no preprocessing (a checkpoint without its "
            "run directory); segmentation needs the size and normalisation it was trained with"
        )
    if cfg.get("image_size") is not None:
        described.preprocessing = described.preprocessing.with_image_size(cfg.image_size)
    return described


def run_segmentation_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every input and write masks, overlays and the CSV; (csv, files, failures)."""

    segmenter = load_segmenter(cfg.ckpt_path) if cfg.ckpt_path else None
    model = describe_model(cfg, segmenter)
    if cfg.threshold is not None or cfg.explain:
        raise ConfigError(
            "threshold= and explain=true apply to classifiers; this is a segmentation model "
            "(its masks are the explanation: see the overlays)"
        )
    if cfg.backend == "torch":
        if segmenter is None:
            raise ConfigError("backend=torch needs ckpt_path=")
        backend = TorchSegmentationBackend(segmenter.net, resolve_device(cfg.device))
    elif cfg.backend == "onnx":
        backend = OnnxSegmentationBackend(
            cfg.onnx_path or str(Path(cfg.ckpt_path).with_suffix(".onnx"))
        )
    else:
        raise ConfigError(f"backend={cfg.backend!r}; expected one of ('torch', 'onnx')")
    inputs = OmegaConf.to_object(cfg.inputs) if OmegaConf.is_config(cfg.inputs) else cfg.inputs
    paths = resolve_inputs(inputs, volumes=True)
    volumes = [p for p in paths if _is_volume(p)]
    images = [p for p in paths if p not in set(volumes)]
    writer = _OutputWriter(cfg, model)
    tta = bool(cfg.tta)  # null (the default): a segmenter trains without flip TTA
    batches = predict_masks(
        images,
        model.preprocessing,
        backend,
        batch_size=cfg.batch_size,
        flip_tta=tta,
        num_workers=resolve_num_workers(cfg.num_workers),
        progress=cfg.progress,
    )
    with writer:
        for batch in batches if images else ():
            for result in batch:
                writer.write(result)
        for path in volumes:  # a mask volume per input volume
            args = (model.preprocessing, backend, cfg.batch_size, tta)
            writer.write_volume(predict_volume(path, *args))
    return writer.csv_path, len(paths), writer.failures


def _is_volume(path: Path) -> bool:
    """A file of a volume format (NIfTI): predicted slice by slice into a mask volume."""
    file_format = format_of(path)
    return file_format is not None and file_format.volume


class _OutputWriter:
    """predictions.csv, one mask PNG and one overlay PNG per readable input."""

    def __init__(self, cfg: DictConfig, model: SegmenterDescription) -> None:
        self.model = model
        self.csv_path = Path(cfg.output_csv)
        self.mask_dir = Path(cfg.mask_dir)
        self.overlay_dir = Path(cfg.overlay_dir)
        self.failures = 0
        self._taken: set[str] = set()

    def __enter__(self) -> _OutputWriter:
        for folder in (self.csv_path.parent, self.mask_dir, self.overlay_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # atomic, as every file a command promises: a full disk names the CSV
        self._writing = atomic_writer(self.csv_path, "w", newline="")
        self._csv = csv.writer(self._writing.__enter__())
        self._csv.writerow(self.header)
        return self

    def __exit__(self, *exc) -> None:
        self._writing.__exit__(*exc)

    @property
    def header(self) -> list[str]:
        lesions = self.model.lesion_classes
        columns = ["path", "lesion_class", "lesion_area_px", "lesion_area_mm2"]
        columns += [f"lesion_area_px/{c}" for c in lesions]
        columns.append("lesion_volume_ml")  # NIfTI volumes; their areas count voxels
        if self.model.joint:
            names = self.model.class_names
            columns += ["predicted_class", "probability", *[f"prob_{c}" for c in names]]
        return [*columns, "mask", "overlay", "error"]

    def write(self, result: MaskPrediction) -> None:
        """The row, mask and overlay of one image."""
        if result.error:
            self._failed(result.path, result.error)
            return
        areas = self._areas(np.bincount(result.mask.ravel()))
        mm2 = result.geometry.area_mm2(int(areas[1:].sum())) if result.geometry else None
        row = self._row(result.path, areas, mm2, None, result.class_probs)
        name = self._unique_name(result.path.stem, ".png")
        mask_path, overlay_path = self.mask_dir / name, self.overlay_dir / name
        _save_mask(result.mask, mask_path)
        _save_png(Image.fromarray(mask_overlay(result.image, result.mask)), overlay_path)
        self._csv.writerow([*row, str(mask_path), str(overlay_path), ""])

    def write_volume(self, result: VolumePrediction) -> None:
        """The row, mask volume (NIfTI, the input's geometry) and overlay of one volume."""
        import nibabel as nib

        if result.error:
            self._failed(result.path, result.error)
            return
        areas = self._areas(result.voxels)
        volume_ml = float(areas[1:].sum()) * result.voxel_ml
        row = self._row(result.path, areas, None, volume_ml, result.class_probs)
        stem = volume_stem(result.path)
        mask_path = self.mask_dir / self._unique_name(stem, ".nii.gz")
        overlay_path = self.overlay_dir / self._unique_name(stem, ".png")
        # the input's affine (its voxel grid and spacing), not its header: a CT's intensity
        # scaling would rescale the labels
        mask = nib.Nifti1Image(result.mask, nib.load(str(result.path)).affine)
        atomic_write_bytes(mask_path, gzip.compress(mask.to_bytes(), compresslevel=6))
        _save_png(Image.fromarray(mask_overlay(result.image, result.slice_mask)), overlay_path)
        self._csv.writerow([*row, str(mask_path), str(overlay_path), ""])

    def _areas(self, counts: np.ndarray) -> np.ndarray:
        """Pixels per class, background first, every class present."""
        return np.pad(counts, (0, max(0, len(self.model.lesion_classes) + 1 - len(counts))))

    def _row(self, path, areas, mm2, volume_ml, class_probs) -> list:
        total = int(areas[1:].sum())
        row = [
            str(path),
            self.model.lesion_classes[int(areas[1:].argmax())] if total else "",
            total,
            "" if mm2 is None else f"{mm2:.2f}",
            *[int(a) for a in areas[1:]],
            "" if volume_ml is None else f"{volume_ml:.3f}",
        ]
        if self.model.joint:
            k = int(class_probs.argmax())
            row += [self.model.class_names[k], f"{class_probs[k]:.6f}"]
            row += [f"{p:.6f}" for p in class_probs]
        return row

    def _failed(self, path: Path, error: str) -> None:
        self.failures += 1
        log.warning("%s: %s", path, error)
        self._csv.writerow([str(path), *[""] * (len(self.header) - 2), error])

    def _unique_name(self, stem: str, suffix: str) -> str:
        """`<stem><suffix>`, numbered when inputs in different folders share a name."""
        name, number = f"{stem}{suffix}", 1
        while name in self._taken:
            name, number = f"{stem}_{number}{suffix}", number + 1
        self._taken.add(name)
        return name


def _save_mask(mask: np.ndarray, path: Path) -> None:
    """A palette PNG: pixel values are class indices, shown in the overlay's colours."""
    image = Image.fromarray(mask.astype(np.uint8))  # mode L; a palette makes it P
    palette = [0, 0, 0] + [v for color in CLASS_COLORS for v in color]
    image.putpalette(palette + [0] * (768 - len(palette)))
    _save_png(image, path)


def _save_png(image: Image.Image, path: Path) -> None:
    atomic_write_with(path, lambda fh: image.save(fh, format="PNG"))
