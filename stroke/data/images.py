"""Decoding images of any mode into the uint8 arrays the model pipeline works on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stroke.data.decoding import decoding
from stroke.data.samples import Sample
from stroke.errors import DatasetError


def read_image(path: str | Path, in_chans: int) -> np.ndarray:
    """Decode an image file into a uint8 HxWxC array with `in_chans` channels (1 or 3).

    Grayscale, RGB, RGBA (composited on black: transparent is air), palette and 16-bit
    images are accepted; 16-bit and 32-bit images are rescaled from their own min..max,
    since their stored range (e.g. HU + 1024) says nothing about a display window.
    """
    path = Path(path)
    if in_chans not in (1, 3):
        raise DatasetError(f"data.in_chans must be 1 or 3, got {in_chans!r}")
    with decoding(path, "image"):
        if path.stat().st_size == 0:
            raise DatasetError(f"image file {path} is empty (0 bytes)")
        with Image.open(path) as img:
            img.load()
            array = _to_uint8(img, path)
    if array.ndim == 2:
        array = array[:, :, None]
    if in_chans == 1 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif in_chans == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def _to_uint8(img: Image.Image, path: Path) -> np.ndarray:
    """A PIL image as uint8 array, 2-D for grayscale, HxWx3 for colour."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():  # NaN would cast to an arbitrary grey, silently
            raise DatasetError(
                f"image {path} holds NaN or infinite values ({mode} pixels); export it with "
                "finite values"
            )
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "L":
        return np.asarray(img)
    if mode in ("1", "P", "CMYK", "YCbCr", "RGB", "HSV", "LAB"):
        rgb = np.asarray(img.convert("RGB"))
        # Grayscale content saved as RGB/palette stays single-channel-equivalent either way.
        return rgb
    return np.asarray(img.convert("RGB"))


def letterbox_box(height: int, width: int, size: int) -> tuple[float, int, int, int, int]:
    """Where a height x width image lands in its `size` letterbox: (scale, top, left, h, w).

    A pixel of the image becomes `scale` pixels of the letterbox on each side, so areas
    measured in the letterbox are divided by scale squared to read in image pixels.
    """
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    return scale, (size - new_h) // 2, (size - new_w) // 2, new_h, new_w


def letterbox(image: np.ndarray, size: int, interpolation: int | None = None) -> np.ndarray:
    """Resize keeping the aspect ratio and pad with black to a `size` x `size` square.

    Stretching would change skull shape and lesion geometry between scanners with
    different fields of view; padding with air does not. `interpolation` is an OpenCV
    flag; None: area averaging when shrinking, linear when enlarging (images; label masks
    take `cv2.INTER_NEAREST`, which invents no label).
    """
    height, width = image.shape[:2]
    scale, top, left, new_h, new_w = letterbox_box(height, width, size)
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if resized.ndim == 2 and image.ndim == 3:
        resized = resized[:, :, None]
    out = np.zeros((size, size, *image.shape[2:]), dtype=image.dtype)
    out[top : top + new_h, left : left + new_w] = resized
    return out


def unletterbox(
    array: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """The inverse of `letterbox`: crop the padding and resize back to height x width."""
    scale, top, left, new_h, new_w = letterbox_box(height, width, array.shape[0])
    crop = np.ascontiguousarray(array[top : top + new_h, left : left + new_w])
    restored = cv2.resize(crop, (width, height), interpolation=interpolation)
    if restored.ndim == 2 and array.ndim == 3:
        restored = restored[:, :, None]
    return restored


class ImageLoader:
    """Reads a sample and brings it to the working resolution: the slow, cacheable step.

    `reader(sample, in_chans)` decodes: `Preprocessing.loader` passes the reader registry's
    `FileReader` (every format, by content) or a source's own `read` (DICOM in HU, NIfTI
    slices); None decodes image files with `read_image`. The letterbox to `image_size` is
    the same for every source.
    """

    def __init__(
        self,
        image_size: int,
        in_chans: int,
        reader: Callable[[Sample, int], np.ndarray] | None = None,
    ) -> None:
        self.image_size = image_size
        self.in_chans = in_chans
        self.reader = reader

    @property
    def fingerprint(self) -> str:
        """Cache-key text for what the pixels depend on besides the file itself.

        Size, channels and the reader (a DICOM or NIfTI source's repr names its windows).
        """
        reader = repr(getattr(self.reader, "__self__", self.reader)) if self.reader else "image"
        return f"{self.image_size}px-{self.in_chans}ch-{reader}"

    def cache_settings(self) -> dict[str, object]:
        """What the decoded-image cache keys on besides the files (see stroke.data.cache)."""
        return {
            "image_size": self.image_size,
            "in_chans": self.in_chans,
            "reader": self.fingerprint,
        }

    def __call__(self, sample: Sample | str | Path) -> np.ndarray:
        """The sample (or image file) as uint8 `image_size` x `image_size` x `in_chans`."""
        return letterbox(self.decode(sample), self.image_size)

    def decode(self, sample: Sample | str | Path) -> np.ndarray:
        """The sample (or image file) at its own size, uint8 H x W x `in_chans`."""
        if self.reader is None:
            path = sample.path if isinstance(sample, Sample) else sample
            return read_image(path, self.in_chans)
        if not isinstance(sample, Sample):
            sample = Sample(Path(sample), label="", patient_id="")
        with decoding(sample.path, "file"):
            image = self.reader(sample, self.in_chans)
        if image.ndim != 3 or image.shape[2] != self.in_chans or image.dtype != np.uint8:
            raise DatasetError(
                f"reader {self.reader!r} returned {image.dtype} {image.shape} for {sample.path}; "
                f"expected uint8 H x W x {self.in_chans}"
            )
        return image
