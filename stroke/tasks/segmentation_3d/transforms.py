"""The 3-D pipeline in MONAI transforms: read, orient, resample, scale, then augment.

The deterministic part (`preprocessing_transforms`: read the volume, channel first, RAS,
the plan's spacing, the plan's intensity scheme) runs once per volume and is cached;
`VolumeAugmentation` (patches with foreground oversampling, flips, a small affine,
intensity scale and shift) runs on every draw, on the training split only. Prediction
runs the same deterministic part on the image alone and inverts its spatial steps on
the output (`stroke.tasks.segmentation_3d.inference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)

from stroke.data.volume_transforms import intensity_transform, resampling_transforms
from stroke.errors import ConfigError

#: the keys of a sample dict: the image volume and its label volume
IMAGE, LABEL = "image", "label"


def preprocessing_transforms(plan: Mapping[str, Any], with_label: bool = True) -> Compose:
    """Read a volume (NIfTI file or DICOM series folder), orient it to RAS, resample it to
    the plan's spacing (image linear, label nearest) and scale its intensities."""
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    labels = [LABEL] if with_label else []
    return Compose(
        [
            LoadImaged(keys, image_only=True),
            EnsureChannelFirstd(keys),
            *resampling_transforms(plan["spacing"], keys, labels).transforms,
            intensity_transform(plan["intensity"], keys=(IMAGE,)),
            EnsureTyped(keys, track_meta=True),
        ]
    )


class VolumeAugmentation:
    """What the training split draws from each cached volume (`augmentation=volume`).

    Args:
        patches_per_volume: patches cut from each volume per draw.
        foreground_fraction: the share of patches centred on a lesion voxel (nnU-Net: 1/3),
            so that small lesions are seen at all.
        flip: the probability of mirroring along each axis.
        affine: the probability of a small rotation and scaling.
        rotate_degrees, scale: their ranges.
        intensity: the probability of an intensity scale and of a shift (each).
    """

    def __init__(
        self,
        patches_per_volume: int = 2,
        foreground_fraction: float = 0.33,
        flip: float = 0.5,
        affine: float = 0.2,
        rotate_degrees: float = 15.0,
        scale: float = 0.1,
        intensity: float = 0.15,
    ) -> None:
        if not isinstance(patches_per_volume, int) or patches_per_volume < 1:
            raise ConfigError(
                f"augmentation.patches_per_volume must be an integer >= 1, got "
                f"{patches_per_volume!r}"
            )
        for name, value in (
            ("foreground_fraction", foreground_fraction),
            ("flip", flip),
            ("affine", affine),
            ("intensity", intensity),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"augmentation.{name} must be in [0, 1], got {value!r}")
        self.patches_per_volume = patches_per_volume
        self.foreground_fraction = float(foreground_fraction)
        self.flip, self.affine, self.intensity = float(flip), float(affine), float(intensity)
        self.rotate_degrees, self.scale = float(rotate_degrees), float(scale)

    def transforms(self, patch_size: Sequence[int]) -> list:
        """The random transforms for patches of `patch_size` voxels."""
        keys = [IMAGE, LABEL]
        patch = [int(p) for p in patch_size]
        fg = self.foreground_fraction
        # pos/neg are relative weights; a foreground share of 0 or 1 is all one kind
        pos, neg = (fg, 1.0 - fg) if 0.0 < fg < 1.0 else ((1.0, 0.0) if fg else (0.0, 1.0))
        radians = self.rotate_degrees * 3.141592653589793 / 180.0
        steps = [
            SpatialPadd(keys, spatial_size=patch),
            RandCropByPosNegLabeld(
                keys,
                label_key=LABEL,
                spatial_size=patch,
                pos=pos,
                neg=neg,
                num_samples=self.patches_per_volume,
                allow_smaller=False,
            ),
        ]
        if self.affine:
            steps.append(
                RandAffined(
                    keys,
                    prob=self.affine,
                    rotate_range=(radians, radians, radians),
                    scale_range=(self.scale,) * 3,
                    mode=("bilinear", "nearest"),
                    padding_mode="border",
                )
            )
        if self.flip:
            steps += [RandFlipd(keys, prob=self.flip, spatial_axis=axis) for axis in range(3)]
        if self.intensity:
            steps += [
                RandScaleIntensityd(IMAGE, factors=0.1, prob=self.intensity),
                RandShiftIntensityd(IMAGE, offsets=0.1, prob=self.intensity),
            ]
        return steps

    def record(self) -> dict[str, Any]:
        """Plain values for logs and the run's config."""
        return dict(vars(self))


def patch_transforms(patch_size: Sequence[int], patches_per_volume: int) -> list:
    """Patches without augmentation (a run with `augmentation=none`): pad, then crop with
    the default foreground oversampling."""
    return VolumeAugmentation(patches_per_volume, flip=0, affine=0, intensity=0).transforms(
        patch_size
    )
