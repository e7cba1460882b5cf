"""The lesion outline and area beside the classification: what the server asks of a segmenter.

A segmenter takes a file (as the classifier does, through the file's path) and returns
the lesion mask on the letterboxed square its input was made into, with the area. The
server draws the mask's outline over the displayed image, which is letterboxed the same
way, and shows the area. `load_segmenter(seg_ckpt_path)` builds one from a segmentation
checkpoint when the installed `stroke` can train them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from stroke.errors import ConfigError


@dataclass(frozen=True)
class LesionMask:
    """A boolean lesion mask (letterboxed square) with its area in pixels and, if known, mm²."""

    mask: np.ndarray
    area_px: int
    area_mm2: float | None = None


@runtime_checkable
class LesionSegmenter(Protocol):
    """Anything that outlines the lesion of an image file."""

    #: what the model card shows (architecture, checkpoint file)
    name: str

    def segment(self, path: Path) -> LesionMask:
        """The lesion mask of the image in `path` (PNG, JPEG or DICOM)."""
        ...


def outline(mask: np.ndarray, max_points: int = 200) -> list[list[list[float]]]:
    """The mask's outer contours as polygons of (x, y) in 0..1 of the square, for the page."""
    binary = np.ascontiguousarray(mask.astype(np.uint8))
    if not binary.any():
        return []
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    height, width = binary.shape
    polygons = []
    for contour in contours:
        points = contour[:, 0, :].astype(np.float64)
        if len(points) > max_points:  # enough to draw; keeps the JSON small
            points = points[np.linspace(0, len(points) - 1, max_points).astype(int)]
        polygons.append(
            [[round((x + 0.5) / width, 4), round((y + 0.5) / height, 4)] for x, y in points]
        )
    return polygons


def lesion_entry(result: LesionMask) -> dict[str, object]:
    """The `lesion` field of a file's result."""
    return {
        "area_px": int(result.area_px),
        "area_mm2": None if result.area_mm2 is None else round(float(result.area_mm2), 2),
        "outline": outline(result.mask),
    }


def load_segmenter(seg_ckpt_path: str | Path | None) -> LesionSegmenter | None:
    """The segmenter of a segmentation checkpoint; None without one.

    FOLLOW-UP (issue 10): segmentation checkpoints come from the segmentation task, which
    this version does not have yet; until it lands a checkpoint is refused here with a
    message saying so. Wiring it is one class with `name` and `segment(path)` built here.
    """
    if not seg_ckpt_path:
        return None
    path = Path(seg_ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"seg_ckpt_path={str(path)!r} does not exist (expected a .ckpt file)")
    raise ConfigError(
        f"seg_ckpt_path={str(path)!r}: this version of stroke cannot serve segmentation "
        "checkpoints yet; leave seg_ckpt_path unset"
    )
