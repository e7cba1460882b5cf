"""Whole-volume prediction: the training preprocessing, a sliding window, the fold ensemble's
mean probabilities, back to the scan's own geometry, small lesions removed, volumes in mL.

`VolumePredictor.predict(path)` takes a NIfTI file or a DICOM series folder and returns the
label volume on the input's voxel grid with the input's affine (MONAI inverts the
orientation and resampling it applied, on the probabilities, before the argmax), so the
output overlays the input voxel for voxel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd
from torch import nn

from stroke.evaluation.lesions import remove_small_lesions, voxel_volume_ml
from stroke.tasks.segmentation_3d.networks import window_logits
from stroke.tasks.segmentation_3d.transforms import IMAGE, preprocessing_transforms

PRED = "pred"


@dataclass
class VolumeResult:
    """One scan's prediction, on the scan's own voxel grid."""

    path: Path
    labels: np.ndarray  # class indices, uint8, the input's shape
    affine: np.ndarray  # 4 x 4, voxel -> RAS mm, the input's
    probabilities: np.ndarray | None = None  # K x spatial, before post-processing
    lesion_classes: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel sides in mm, from the affine."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def voxel_ml(self) -> float:
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def volumes_ml(self) -> dict[str, float]:
        """The predicted volume of each lesion class in mL."""
        return {
            name: float((self.labels == k).sum()) * self.voxel_ml
            for k, name in enumerate(self.lesion_classes, start=1)
        }


def min_lesion_voxels(min_lesion_ml: Sequence[float] | None, voxel_ml: float) -> list[int] | None:
    """Per class, the smallest component kept, in voxels of this scan; None keeps all."""
    if not min_lesion_ml:
        return None
    return [int(math.ceil(ml / voxel_ml - 1e-9)) if ml > 0 else 0 for ml in min_lesion_ml]


class VolumePredictor:
    """The networks of one model (one, or a fold ensemble) applied to whole scans.

    Args:
        nets: networks in eval mode; their softmax probabilities are averaged.
        plan: the checkpoint's volume plan (spacing, patch, intensity).
        lesion_classes: the output channels 1..K.
        min_lesion_ml: per class, predicted components smaller than this are removed.
    """

    def __init__(
        self,
        nets: Sequence[nn.Module],
        plan: Mapping[str, Any],
        lesion_classes: Sequence[str],
        device: str = "cpu",
        overlap: float = 0.5,
        sw_batch_size: int = 2,
        min_lesion_ml: Sequence[float] | None = None,
    ) -> None:
        self.nets = [net.to(device).eval() for net in nets]
        self.plan = dict(plan)
        self.lesion_classes = list(lesion_classes)
        self.device = device
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.min_lesion_ml = list(min_lesion_ml) if min_lesion_ml else None
        self.preprocess = preprocessing_transforms(self.plan, with_label=False)
        self.invert = Invertd(
            keys=PRED, transform=self.preprocess, orig_keys=IMAGE, nearest_interp=False
        )

    @torch.no_grad()
    def probabilities(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """(softmax probabilities K x spatial on the input's grid, the input's affine)."""
        data = self.preprocess({IMAGE: str(path)})
        image = data[IMAGE]
        volume = image.as_tensor()[None].float().to(self.device)
        total = None
        for net in self.nets:
            logits = window_logits(
                net, volume, self.plan["patch_size"], self.overlap, self.sw_batch_size
            )
            probs = torch.softmax(logits.float(), dim=1)[0].cpu()
            total = probs if total is None else total + probs
        mean = total / len(self.nets)
        data[PRED] = MetaTensor(mean, meta=dict(image.meta))
        back = self.invert(data)[PRED]
        return np.asarray(back, dtype=np.float32), np.asarray(back.affine, dtype=np.float64)

    def predict(self, path: str | Path, keep_probabilities: bool = False) -> VolumeResult:
        """The label volume of one scan, post-processed, on its own grid."""
        probs, affine = self.probabilities(path)
        labels = probs.argmax(axis=0).astype(np.uint8)
        result = VolumeResult(Path(path), labels, affine, None, self.lesion_classes)
        limits = min_lesion_voxels(self.min_lesion_ml, result.voxel_ml)
        if limits:
            result.labels = remove_small_lesions(labels, limits, len(self.lesion_classes))
        if keep_probabilities:
            result.probabilities = probs
        return result


def postprocess(result: VolumeResult, min_lesion_ml: Sequence[float] | None) -> np.ndarray:
    """A result's labels (before any removal: from its probabilities) with components
    smaller than `min_lesion_ml` per class removed."""
    labels = (
        result.probabilities.argmax(axis=0).astype(np.uint8)
        if result.probabilities is not None
        else result.labels
    )
    limits = min_lesion_voxels(min_lesion_ml, result.voxel_ml)
    return remove_small_lesions(labels, limits, len(result.lesion_classes)) if limits else labels


def voxel_ml_of(affine: np.ndarray) -> float:
    """mL per voxel of an affine (the same as `voxel_volume_ml` of its spacing)."""
    return voxel_volume_ml(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
