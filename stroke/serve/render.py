"""The pictures the page shows for a file, as PNG data URLs.

`model`: the image as the model sees it (its windows, channels and letterbox) at display
size; `gradcam`: the Grad-CAM map over it; for DICOM, one picture per window preset
(brain, subdural, stroke, bone) so the page's window selector can switch at once. These
are for display only: the prediction always comes from the model's own preprocessing.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from stroke.data.dicom_pixels import read_hu
from stroke.data.images import ImageLoader, letterbox
from stroke.data.windowing import WINDOW_PRESETS, apply_windows
from stroke.explain.gradcam import overlay


def png_data_url(image: np.ndarray) -> str:
    """A uint8 H x W (x 1 | 3) image as a `data:image/png;base64,...` URL."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def window_views(path: Path, display_size: int) -> dict[str, str]:
    """One picture per window preset of a DICOM file (none for colour files, which have no HU)."""
    values, _ = read_hu(path)
    if values.ndim != 2:
        return {}
    return {
        name: png_data_url(letterbox(apply_windows(values, [window], 1), display_size))
        for name, window in WINDOW_PRESETS.items()
    }


def file_views(
    path: Path,
    kind: str,
    display_loader: ImageLoader,
    cam: np.ndarray | None,
    display_size: int,
    windows: bool,
) -> dict[str, str]:
    """The pictures of one file: `model`, `gradcam` when a map is given, window presets."""
    seen = display_loader(path)
    views = {"model": png_data_url(seen)}
    if cam is not None:
        views["gradcam"] = png_data_url(overlay(seen, cam))
    if windows and kind == "dicom":
        views.update(window_views(path, display_size))
    return views
