"""A segmenter's masks from images and volumes: the backends (torch, ONNX) and the
batched prediction stroke-predict and stroke-serve share (no files written here).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from stroke.data.images import letterbox
from stroke.data.nifti import (
    axial_slicer,
    axial_spacing_mm,
    read_axial_slice,
    to_voxel_plane,
    volume_geometry,
)
from stroke.data.preprocessing import Preprocessing
from stroke.data.samples import Sample
from stroke.data.windowing import apply_windows, resolve_window
from stroke.inference.predictor import OnnxBackend
from stroke.tasks.segmentation.units import SliceGeometry, slice_geometry

log = logging.getLogger("stroke.predict")


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
