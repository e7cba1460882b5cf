"""Lesion masks drawn on their images: filled overlays (stroke-predict) and outlines (figures).

One colour per lesion class, the same in TensorBoard, the report's gallery and the overlay
PNGs of stroke-predict.
"""

from __future__ import annotations

import cv2
import numpy as np

#: RGB colour of lesion class k (index k - 1): red, cyan, yellow, magenta, ...
CLASS_COLORS = ((230, 40, 40), (40, 200, 230), (240, 220, 40), (220, 60, 220), (60, 220, 90))
#: The true outline in figures that show truth and prediction together.
TRUTH_COLOR = (40, 230, 60)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 H x W, H x W x 1 or H x W x 3 image as H x W x 3 (the first channel if grey)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def class_color(k: int) -> tuple[int, int, int]:
    """The colour of lesion class k (1-based: 0 is background)."""
    return CLASS_COLORS[(k - 1) % len(CLASS_COLORS)]


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The mask (class indices) over the image: each lesion class tinted and outlined."""
    rgb = to_rgb(image).astype(np.float32)
    for k in np.unique(mask):
        if k == 0:
            continue
        region = mask == k
        rgb[region] = (1 - alpha) * rgb[region] + alpha * np.asarray(class_color(int(k)))
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    return draw_outlines(out, mask, None)


def draw_outlines(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] | None, thickness: int = 1
) -> np.ndarray:
    """The outline of every lesion class of `mask` on the image (RGB); None: each class's colour."""
    out = to_rgb(image).copy()
    for k in np.unique(mask):
        if k == 0:
            continue
        contours, _ = cv2.findContours(
            (mask == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(out, contours, -1, color or class_color(int(k)), thickness)
    return out


def truth_and_prediction(image: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The true outline (green) and the predicted one (the class's colour) on one image."""
    return draw_outlines(draw_outlines(image, true > 0, TRUTH_COLOR), pred, None)
