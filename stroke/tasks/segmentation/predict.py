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
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from stroke.data.images import letterbox
from stroke.data.nifti import (
    axial_slicer,
    axial_spacing_mm,
    read_axial_slice,
    to_voxel_plane,
    volume_geometry,
    volume_stem,
)
from stroke.data.preprocessing import Preprocessing
from stroke.data.readers import format_of
from stroke.data.samples import Sample
from stroke.data.windowing import apply_windows, resolve_window
from stroke.errors import ConfigError
from stroke.evaluation.overlay import CLASS_COLORS, mask_overlay
from stroke.hardware import resolve_device, resolve_num_workers
from stroke.inference.onnx_export import read_onnx_metadata
from stroke.inference.predictor import OnnxBackend, resolve_inputs
from stroke.tasks.segmentation.checkpoint import load_segmenter
from stroke.tasks.segmentation.units import SliceGeometry, slice_geometry

log = logging.getLogger("stroke.predict")


@dataclass
class SegmenterDescription:
    """What prediction needs of a segmenter, from its checkpoint or its ONNX metadata."""

    lesion_classes: list[str]
    class_names: list[str]
    joint: bool
    preprocessing: Preprocessing


@dataclass
class MaskPrediction:
    """The outcome for one file: its mask at the file's size, or the error that prevented it."""

    path: Path
    mask: np.ndarray | None = None
    image: np.ndarray | None = None
    class_probs: np.ndarray | None = None
    geometry: SliceGeometry | None = None
    error: str = ""


class TorchSegmentationBackend:
    """(mask logits, class logits or None) from a PyTorch segmentation network."""

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.net(torch.from_numpy(batch).to(self.device))
        if isinstance(out, tuple | list):
            return out[0].float().cpu().numpy(), out[1].float().cpu().numpy()
        return out.float().cpu().numpy(), None


class OnnxSegmentationBackend:
    """(mask logits, class logits or None) from an exported segmenter through ONNX Runtime."""

    def __init__(self, onnx_path: str | Path) -> None:

        self.session = OnnxBackend(onnx_path).session
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.session.run(None, {self.input_name: batch.astype(np.float32)})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def probabilities(
    backend, batch: np.ndarray, flip_tta: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-pixel class probabilities (N x K x H x W) and image class probabilities (or None).

    With flip TTA, the mean over the image and its left-right mirror (mirrored back).
    """
    if not flip_tta:
        masks, classes = backend(batch)
        return _softmax(masks), None if classes is None else _softmax(classes)
    masks, classes = backend(np.concatenate([batch, batch[..., ::-1]], axis=0))
    n = len(batch)
    mask_probs = (_softmax(masks[:n]) + _softmax(masks[n:])[..., ::-1]) / 2
    class_probs = None if classes is None else (_softmax(classes[:n]) + _softmax(classes[n:])) / 2
    return mask_probs, class_probs


class _InputImages(Dataset):
    """Each file read as training read it (native image, then letterbox and normalisation)."""

    def __init__(self, paths: Sequence[Path], preprocessing: Preprocessing) -> None:
        self.paths = list(paths)
        self.preprocessing = preprocessing
        self.loader = preprocessing.file_loader()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        sample = Sample(self.paths[index], label="", patient_id="")
        try:
            native = self.loader.decode(sample)
            geometry = slice_geometry(sample)
        except Exception as err:  # any failure to read is reported per file
            return index, None, None, None, f"{type(err).__name__}: {err}"
        boxed = letterbox(native, self.preprocessing.image_size)
        return index, self.preprocessing.normalize(boxed), native, geometry, ""


def predict_masks(
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    backend,
    batch_size: int = 16,
    flip_tta: bool = False,
    num_workers: int = 0,
    progress: bool = True,
) -> Iterator[list[MaskPrediction]]:
    """Yield mask predictions batch by batch, in the order of `paths`."""
    dataset = _InputImages(paths, preprocessing)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    with tqdm(total=len(dataset), desc="predict", unit="img", disable=not progress) as bar:
        for items in loader:
            readable = [item for item in items if not item[4]]
            if readable:
                batch = np.stack([item[1] for item in readable])
                mask_probs, class_probs = probabilities(backend, batch, flip_tta)
            results = []
            position = {item[0]: k for k, item in enumerate(readable)}
            for index, _, native, geometry, error in items:
                if error:
                    results.append(MaskPrediction(dataset.paths[index], error=error))
                    continue
                k = position[index]
                probs = mask_probs[k].transpose(1, 2, 0)
                restored = preprocessing.restore_size(probs, *native.shape[:2], nearest=False)
                results.append(
                    MaskPrediction(
                        dataset.paths[index],
                        mask=restored.reshape(*native.shape[:2], -1).argmax(axis=2),
                        image=native,
                        class_probs=None if class_probs is None else class_probs[k],
                        geometry=geometry,
                    )
                )
            bar.update(len(items))
            yield results


@dataclass
class VolumePrediction:
    """A NIfTI volume's mask in its own voxel grid, or the error that prevented it."""

    path: Path
    mask: np.ndarray | None = None  # voxel order, the input's geometry
    voxels: np.ndarray | None = None  # lesion voxels per class (0: background)
    voxel_ml: float | None = None
    #: the slice with the most lesion, as shown, and its mask: the overlay
    image: np.ndarray | None = None
    slice_mask: np.ndarray | None = None
    class_probs: np.ndarray | None = None  # mean over the slices (joint models)
    error: str = ""


def predict_volume(
    path: Path, preprocessing: Preprocessing, backend, batch_size: int, flip_tta: bool
) -> VolumePrediction:
    """Every axial slice of a NIfTI volume through the model; the masks back in voxel order.

    Slices are read as training read them (`NiftiSource`: the recorded window(s)).
    """

    if preprocessing.dicom_windows is None:
        return VolumePrediction(
            path,
            error="ConfigError: this model records no window to read NIfTI volumes with "
            "(trained on image files); predict on the kind of files it was trained on",
        )
    windows = [resolve_window(w, "dicom_windows") for w in preprocessing.dicom_windows]
    try:
        _, n_slices, _ = volume_geometry(path)
        slices = [
            apply_windows(read_axial_slice(path, k), windows, preprocessing.in_chans)
            for k in range(n_slices)
        ]
        row_mm, column_mm, slice_mm = axial_spacing_mm(path)
    except Exception as err:  # any failure to read is reported per file
        return VolumePrediction(path, error=f"{type(err).__name__}: {err}")
    import nibabel as nib

    volume = np.zeros(nib.load(str(path)).shape[:3], dtype=np.uint8)
    masks, probs = [], []
    for start in range(0, n_slices, batch_size):
        chunk = slices[start : start + batch_size]
        size = preprocessing.image_size
        batch = np.stack([preprocessing.normalize(letterbox(image, size)) for image in chunk])
        mask_probs, class_probs = probabilities(backend, batch, flip_tta)
        for image, slice_probs in zip(chunk, mask_probs, strict=True):
            restored = preprocessing.restore_size(
                slice_probs.transpose(1, 2, 0), *image.shape[:2], nearest=False
            )
            masks.append(restored.reshape(*image.shape[:2], -1).argmax(axis=2).astype(np.uint8))
        if class_probs is not None:
            probs.append(class_probs)
    for k, mask in enumerate(masks):
        volume[axial_slicer(path, k)[:3]] = to_voxel_plane(path, mask)
    worst = int(np.argmax([(m > 0).sum() for m in masks]))
    return VolumePrediction(
        path,
        mask=volume,
        voxels=np.bincount(volume.ravel()),
        voxel_ml=row_mm * column_mm * slice_mm / 1000.0,
        image=slices[worst],
        slice_mask=masks[worst],
        class_probs=np.concatenate(probs).mean(axis=0) if probs else None,
    )


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
        self._file = self.csv_path.open("w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(self.header)
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

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
        Image.fromarray(mask_overlay(result.image, result.mask)).save(overlay_path)
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
        nib.save(nib.Nifti1Image(result.mask, nib.load(str(result.path)).affine), mask_path)
        Image.fromarray(mask_overlay(result.image, result.slice_mask)).save(overlay_path)
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
    image.save(path)
