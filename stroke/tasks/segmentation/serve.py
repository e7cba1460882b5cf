"""The lesion outline and area beside the classification: what the server asks of a segmenter.

A segmenter takes a file (as the classifier does, through the file's path) and returns
the lesion mask on the letterboxed square its input was made into, with the area. The
server draws the mask's outline over the displayed image, which is letterboxed the same
way, and shows the area. `load_served_segmenter(seg_ckpt_path)` builds one from a segmentation
checkpoint (`stroke-train experiment=lesion_segmentation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from stroke.data.images import letterbox
from stroke.errors import ConfigError, DatasetError
from stroke.tasks.segmentation.checkpoint import load_segmenter
from stroke.tasks.segmentation.inference import TorchSegmentationBackend, predict_masks


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


class CheckpointSegmenter:
    """A trained segmenter behind the `LesionSegmenter` protocol: `stroke-predict`'s own path.

    Each file goes through `stroke.tasks.segmentation.predict.predict_masks`, so the server's
    lesion area equals the `lesion_area_px`/`lesion_area_mm2` `stroke-predict` writes for
    the same file (any lesion class counts); the mask is then letterboxed (nearest
    neighbour) onto the square the page shows.
    """

    def __init__(self, loaded, device: str = "cpu") -> None:

        if loaded.preprocessing is None:
            raise ConfigError(
                f"seg_ckpt_path={str(loaded.path)!r} records no preprocessing (image size, "
                "channels, normalisation); retrain it with this version of stroke"
            )
        self.name = f"{loaded.description} ({loaded.path.name})"
        self.lesion_classes = list(loaded.lesion_classes)
        self.preprocessing = loaded.preprocessing
        self.backend = TorchSegmentationBackend(loaded.net, device)
        self._predict_masks = predict_masks

    def segment(self, path: Path) -> LesionMask:
        """The lesion mask of the file in `path`, as `stroke-predict` computes it."""
        [result] = next(
            self._predict_masks([Path(path)], self.preprocessing, self.backend, 1, progress=False)
        )
        if result.error:
            raise DatasetError(f"the segmenter cannot read this file: {result.error}")
        lesion = (result.mask > 0).astype(np.uint8)
        area_px = int(lesion.sum())
        area_mm2 = result.geometry.area_mm2(area_px) if result.geometry is not None else None
        square = letterbox(lesion, self.preprocessing.image_size, cv2.INTER_NEAREST)
        return LesionMask(square.astype(bool), area_px, area_mm2)


def load_served_segmenter(seg_ckpt_path: str | Path, device: str = "cpu") -> LesionSegmenter:
    """The segmenter of a segmentation checkpoint (`stroke-train
    experiment=lesion_segmentation`); `stroke-serve` (cli/serve.served) checks the path and
    names its key in the messages, as for every task's serve part."""
    return CheckpointSegmenter(load_segmenter(Path(seg_ckpt_path).expanduser()), device)
