"""A dataset's fingerprint, nnU-Net style: what the training scans are like before planning.

For every training scan (in RAS, as training reads it): its voxel spacing in mm, its shape
in voxels, and a sample of the intensities inside its label volume's foreground (nnU-Net
samples 10,000 foreground voxels a case). From them the planner
(stroke.data.volume_planner) chooses the target spacing, the patch, the network and the
CT intensity scheme: clip to the foreground's 0.5-99.5 percentiles, then z-score with the
foreground's mean and standard deviation, all measured on the training split only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from monai.transforms import LoadImage, Orientation

from stroke.errors import DatasetError

#: foreground voxels sampled per scan for the intensity statistics (nnU-Net's number)
FOREGROUND_SAMPLES = 10_000


def load_ras_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """A NIfTI file or a DICOM series folder as (voxels x y z float32 in RAS, spacing in mm,
    the RAS affine); a file that cannot be read is one error naming it."""
    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
        image = Orientation(axcodes="RAS", labels=None)(image)
    except Exception as err:  # readers raise many kinds for a damaged or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatasetError(f"cannot read volume {path}: {reason}") from err
    voxels = np.asarray(image[0], dtype=np.float32)
    if voxels.ndim != 3:
        raise DatasetError(f"volume {path} has {voxels.ndim} spatial axes; expected 3")
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return voxels, spacing, affine  # type: ignore[return-value]


@dataclass
class VolumeFingerprint:
    """What the planner needs to know of the training scans."""

    spacings: list[tuple[float, float, float]]
    shapes: list[tuple[int, int, int]]
    #: foreground intensities sampled across scans (the planner's percentiles and z-score)
    foreground: np.ndarray = field(repr=False)
    #: voxels of each label value > 0, summed over scans (lesions the patch must see)
    lesion_voxels: dict[int, int] = field(default_factory=dict)

    @property
    def n_cases(self) -> int:
        return len(self.shapes)

    @property
    def median_spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.median(np.asarray(self.spacings), axis=0))  # type: ignore[return-value]

    @property
    def median_shape(self) -> tuple[int, int, int]:
        return tuple(int(round(v)) for v in np.median(np.asarray(self.shapes), axis=0))  # type: ignore[return-value]

    def intensity_statistics(self) -> dict[str, float]:
        """The foreground's 0.5 and 99.5 percentiles, mean and standard deviation."""
        values = self.foreground
        if values.size == 0:
            raise DatasetError(
                "the training scans' label volumes hold no foreground voxel, so there are no "
                "lesion intensities to plan the CT normalisation from; use "
                "data.plan_overrides.intensity={scheme: window, level: 40, width: 80}"
            )
        low, high = np.percentile(values, [0.5, 99.5])
        clipped = np.clip(values, low, high)
        return {
            "percentile_00_5": float(low),
            "percentile_99_5": float(high),
            "mean": float(clipped.mean()),
            "std": float(max(clipped.std(), 1e-6)),
        }


def fingerprint(
    cases: Sequence[tuple[Path, Path | None]],
    samples_per_case: int = FOREGROUND_SAMPLES,
    seed: int = 0,
) -> VolumeFingerprint:
    """The fingerprint of (image, label volume) pairs: spacings, shapes, foreground sample.

    A label volume whose geometry differs from its image's is an error naming both files.
    """
    if not cases:
        raise DatasetError("no training scans to fingerprint")
    rng = np.random.default_rng(seed)
    spacings, shapes, foreground = [], [], []
    lesions: dict[int, int] = {}
    for image_path, label_path in cases:
        voxels, spacing, affine = load_ras_volume(image_path)
        spacings.append(spacing)
        shapes.append(tuple(int(s) for s in voxels.shape))
        if label_path is None:
            continue
        labels, _, label_affine = load_ras_volume(label_path)
        if labels.shape != voxels.shape or not np.allclose(label_affine, affine, atol=1e-3):
            raise DatasetError(
                f"label volume {label_path} does not share the geometry of {image_path} "
                f"(shape {labels.shape} vs {voxels.shape}); a label volume must be on its "
                "scan's voxel grid"
            )
        mask = labels > 0
        values = voxels[mask]
        if values.size > samples_per_case:
            values = rng.choice(values, samples_per_case, replace=False)
        foreground.append(values)
        found, counts = np.unique(labels[mask].astype(np.int64), return_counts=True)
        for value, count in zip(found, counts, strict=True):
            lesions[int(value)] = lesions.get(int(value), 0) + int(count)
    sample = np.concatenate(foreground) if foreground else np.zeros(0, np.float32)
    return VolumeFingerprint(spacings, shapes, sample, dict(sorted(lesions.items())))
