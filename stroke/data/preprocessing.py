"""The one contract from an image on disk to the model's input tensor.

Training (the datamodule and its dataset), evaluation, prediction, export and serving all
take a `Preprocessing` and nothing else: the same letterbox to the same size, the same
channels, the same HU windows for DICOM and the same normalisation, so what a model sees
at inference is what it saw in training. A checkpoint stores it as plain values
(`record()`), and `from_record()` rebuilds it without the training config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from stroke.data.images import ImageLoader, letterbox, letterbox_box, unletterbox
from stroke.data.readers import FileReader
from stroke.data.samples import Sample
from stroke.errors import ConfigError, DatasetError
from stroke.parameters import IMAGE_SIZE, Choice, Integer, check

log = logging.getLogger(__name__)

#: Normalisation of the 0..1 pixel range when a config sets none: a windowed CT slice is
#: mostly air (0) and brain (mid-grey), so 0.5 +- 0.25 puts it near zero mean, unit spread.
DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25
#: contrast equalisation of the uint8 image before normalisation (None: none)
EQUALIZE = (None, "clahe", "histogram")
#: fixed: (x - mean) / std with the recorded values; image: each image (each channel) to
#: zero mean, unit spread by its own statistics (exports whose grey levels differ)
NORMALIZATIONS = ("fixed", "image")
#: CLAHE: the clip limit and the tile grid (OpenCV's defaults are 40 and 8 x 8)
CLAHE_CLIP = 2.0
CLAHE_TILES = 8

Reader = Callable[[Sample, int], np.ndarray]


def per_channel(value: float | Sequence[float], in_chans: int, key: str) -> tuple[float, ...]:
    """A scalar or one value per channel, as one value per channel (`key` names it in errors)."""
    try:
        values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key} must be a number or a list of numbers, got {value!r}") from err
    if len(values) == 1:
        return tuple(values * in_chans)
    if len(values) != in_chans:
        raise ConfigError(f"{key} has {len(values)} values for in_chans={in_chans}")
    return tuple(values)


@dataclass(frozen=True)
class Preprocessing:
    """Size, channels, windows and normalisation: what turns an image into the model's input.

    Images are letterboxed (resized keeping their aspect ratio, padded with black) to
    `image_size` squares with `in_chans` channels, scaled to 0..1 and normalised with
    `mean` and `std` per channel. `dicom_windows` holds the HU windows (plain values) that
    made the channels of a model trained on DICOM or NIfTI (and read such files at
    prediction); None for a model trained on image files.
    """

    image_size: int
    in_chans: int
    mean: tuple[float, ...] = (DEFAULT_MEAN,)
    std: tuple[float, ...] = (DEFAULT_STD,)
    dicom_windows: tuple | None = None
    equalize: str | None = None
    normalization: str = "fixed"
    #: 2.5D: k neighbouring slices on each side as extra channels (stroke/data/context.py)
    context_slices: int = 0

    #: the keys a config sets, declared (stroke.parameters); mean and std are per channel
    CONSTRAINTS: ClassVar[dict[str, Any]] = {
        "image_size": IMAGE_SIZE,
        "in_chans": Choice((1, 3)),
        "context_slices": Integer(0),
        "equalize": Choice(EQUALIZE),
        "normalization": Choice(NORMALIZATIONS),
    }

    def __post_init__(self) -> None:
        values = {key: getattr(self, key) for key in self.CONSTRAINTS}
        check(values, self.CONSTRAINTS, prefix="data.")
        object.__setattr__(self, "mean", per_channel(self.mean, self.in_chans, "data.mean"))
        object.__setattr__(self, "std", per_channel(self.std, self.in_chans, "data.std"))
        if min(self.std) <= 0:
            raise ConfigError(f"data.std must be > 0 for every channel, got {list(self.std)}")
        if self.dicom_windows is not None:
            object.__setattr__(self, "dicom_windows", tuple(self.dicom_windows))

    # -- the record in checkpoints and ONNX files -------------------------------------------
    def record(self) -> dict[str, Any]:
        """Plain values (ints, floats, lists, dicts) for a checkpoint or ONNX metadata."""
        record: dict[str, Any] = {
            "image_size": self.image_size,
            "in_chans": self.in_chans,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.dicom_windows is not None:
            record["dicom_windows"] = list(self.dicom_windows)
        record["equalize"] = self.equalize
        record["normalization"] = self.normalization
        record["context_slices"] = self.context_slices
        return record

    @property
    def channels(self) -> int:
        """Channels of the model input: `in_chans` per slice, 2k + 1 slices with context."""
        return self.in_chans * (2 * self.context_slices + 1)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from `record()` (older records without mean/std get the defaults)."""
        try:
            return cls(
                image_size=int(record["image_size"]),
                in_chans=int(record["in_chans"]),
                mean=record.get("mean", DEFAULT_MEAN),
                std=record.get("std", DEFAULT_STD),
                dicom_windows=record.get("dicom_windows"),
                equalize=record.get("equalize"),
                normalization=record.get("normalization") or "fixed",
                context_slices=int(record.get("context_slices") or 0),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"preprocessing record {dict(record)} is incomplete: {err}") from err

    def with_image_size(self, image_size: int | None) -> Preprocessing:
        """The same preprocessing at another input size (None: unchanged)."""
        return self if image_size is None else replace(self, image_size=int(image_size))

    # -- pixels -------------------------------------------------------------------------------
    def loader(self, reader: Reader | None = None) -> ImageLoader:
        """Decode a sample and letterbox it to uint8 `image_size`^2 x `in_chans` (cacheable).

        `reader` is a source's own decoding (a DICOM or NIfTI source's `read`, which knows
        its windows and frames); None reads any format of the registry (stroke.data.readers),
        HU formats through `dicom_windows`: the same reader training's image sources,
        stroke-predict and stroke-serve use.
        """
        return ImageLoader(
            self.image_size, self.in_chans, reader=reader or FileReader(self.dicom_windows)
        )

    def file_loader(self) -> ImageLoader:
        """The loader for files named at inference (every registered format): `loader()`."""
        return self.loader()

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        """A label mask (H x W integers) letterboxed like its image, nearest neighbour.

        Nearest neighbour keeps every pixel a label of the mask: interpolating between
        label 1 and label 2 would invent a 1.5 that belongs to no class.
        """
        return letterbox(mask, self.image_size, cv2.INTER_NEAREST)

    def restore_size(self, array: np.ndarray, height: int, width: int, nearest: bool) -> np.ndarray:
        """A model-sized output (mask or H x W x K probabilities) back on a height x width image.

        The inverse of the letterbox: the padding is cropped, the rest resized, nearest
        neighbour for labels, linear for probabilities.
        """
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return unletterbox(array, height, width, interpolation)

    def pixel_scale(self, height: int, width: int) -> float:
        """Model pixels per image pixel (per side) for a height x width image.

        The letterbox changes the pixel size: an area of n model pixels is
        n / pixel_scale**2 pixels of the original image.
        """
        return letterbox_box(height, width, self.image_size)[0]

    def equalized(self, image: np.ndarray) -> np.ndarray:
        """The uint8 H x W x C image with `equalize` applied to each channel (a copy)."""
        if image.ndim == 2:
            image = image[:, :, None]
        if self.equalize is None:
            return image
        out = np.empty_like(image)
        if self.equalize == "clahe":
            clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES,) * 2)
            equalize = clahe.apply
        else:
            equalize = cv2.equalizeHist
        for c in range(image.shape[2]):
            out[:, :, c] = equalize(np.ascontiguousarray(image[:, :, c]))
        return out

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """uint8 H x W x C (after any augmentation) -> normalised float32 C x H x W.

        `equalize` first (CLAHE or histogram equalisation, on the uint8 pixels), then the
        fixed mean/std, or each image's own statistics (`normalization=image`).
        """
        if image.ndim == 2:  # some transforms drop a single channel axis
            image = image[:, :, None]
        image = self.equalized(image)
        scaled = image.astype(np.float32) / np.float32(255.0)
        if self.normalization == "image":
            mean = scaled.mean(axis=(0, 1))
            std = np.maximum(scaled.std(axis=(0, 1)), np.float32(1e-3))
        else:  # the per-slice values repeat for each slice of a 2.5D input
            repeat = image.shape[2] // self.in_chans
            mean = np.tile(np.asarray(self.mean, dtype=np.float32), repeat)
            std = np.tile(np.asarray(self.std, dtype=np.float32), repeat)
        scaled = (scaled - mean) / std
        return np.ascontiguousarray(scaled.transpose(2, 0, 1).astype(np.float32))

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """`normalize` as a torch tensor (what datasets return)."""
        return torch.from_numpy(self.normalize(image))

    def to_display(self, tensor: torch.Tensor | np.ndarray) -> np.ndarray:
        """A normalised C x H x W input back to the uint8 H x W x C image it came from
        (after `equalize`; with per-image normalisation, stretched to its own range)."""
        array = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else tensor
        if self.context_slices:  # the middle slice: the one the input is about
            start = self.context_slices * self.in_chans
            array = array[start : start + self.in_chans]
        if self.normalization == "image":
            array = np.asarray(array, dtype=np.float32)
            low = array.min(axis=(1, 2), keepdims=True)
            span = np.maximum(array.max(axis=(1, 2), keepdims=True) - low, 1e-6)
            pixels = (array - low) / span * 255.0
            return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        pixels = (np.asarray(array, dtype=np.float32) * std + mean) * 255.0
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)


#: the fields of `Preprocessing`, the keys of its `record()`: declared once, by the dataclass
PREPROCESSING_FIELDS = tuple(f.name for f in fields(Preprocessing))


def measured_statistics(
    preprocessing: Preprocessing, train: Sequence[Sample], view: Callable[[Sample], np.ndarray]
) -> Preprocessing:
    """`data.mean=dataset data.std=dataset`: `preprocessing` with the per-channel mean and
    std of the training images (after `equalize`), read through `view` (the loader or the
    cache)."""
    if not train:
        raise DatasetError("data.mean/std=dataset: no training images to measure")
    sums = np.zeros(preprocessing.in_chans)
    squares = np.zeros(preprocessing.in_chans)
    pixels = 0
    for sample in train:
        image = preprocessing.equalized(view(sample)).astype(np.float64) / 255.0
        sums += image.sum(axis=(0, 1))
        squares += (image**2).sum(axis=(0, 1))
        pixels += image.shape[0] * image.shape[1]
    mean = sums / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-6))
    log.info(
        "data: mean %s, std %s measured on %d training images",
        [round(m, 4) for m in mean], [round(v, 4) for v in std], len(train),
    )  # fmt: skip
    return replace(preprocessing, mean=tuple(mean.tolist()), std=tuple(std.tolist()))
