"""The spatial and intensity steps of a volume plan, as MONAI transforms.

`resampling_transforms` orients a scan to RAS and resamples it to the plan's spacing (images
linear, label volumes nearest); MONAI records both steps on the tensor, so
`monai.transforms.Invertd` takes a prediction back to the scan's own grid.
`intensity_transform` applies the plan's intensity scheme (see stroke.data.volume_plan):
nnU-Net's CT clip-and-z-score, a fixed HU window, or per-scan z-scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai.transforms import (
    Compose,
    NormalizeIntensityd,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)

from stroke.data.volume_plan import check_intensity

#: the canonical orientation of every volume the 3-D tasks see
CANONICAL = "RAS"


def resampling_transforms(
    target_spacing: Sequence[float], keys: Sequence[str], label_keys: Sequence[str] = ()
) -> Compose:
    """RAS orientation, then the target spacing in mm (label keys nearest-neighbour)."""
    keys = list(keys)
    modes = ["nearest" if key in label_keys else "bilinear" for key in keys]
    return Compose(
        [
            Orientationd(keys, axcodes=CANONICAL, labels=None),
            Spacingd(keys, pixdim=[float(s) for s in target_spacing], mode=modes),
        ]
    )


def intensity_transform(intensity: Mapping[str, Any], keys: Sequence[str]) -> Compose:
    """The plan's intensity scheme on `keys` (the image keys, never the label volume's)."""
    spec = check_intensity(intensity, "plan.intensity")
    keys = list(keys)
    if spec["scheme"] == "ct":
        low, high = spec["clip"]
        return Compose(
            [
                ScaleIntensityRanged(keys, a_min=low, a_max=high, b_min=low, b_max=high, clip=True),
                NormalizeIntensityd(keys, subtrahend=spec["mean"], divisor=spec["std"]),
            ]
        )
    if spec["scheme"] == "window":
        low = spec["level"] - spec["width"] / 2
        high = spec["level"] + spec["width"] / 2
        return Compose(
            [ScaleIntensityRanged(keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
        )
    return Compose([NormalizeIntensityd(keys, nonzero=True, channel_wise=True)])
