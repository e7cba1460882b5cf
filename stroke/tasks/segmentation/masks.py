"""Lesion masks: reading them, checking them against their images, mapping values to classes.

A mask is a label image of the same size as its image: a PNG beside it (`<root>/masks/...`,
a CSV column) or a slice of a NIfTI label volume. What its values mean is configured
(`data.masks`, a `LesionMasks`):

- `values: binary`: 0 is background, any of 1 / 255 is lesion; the lesion's class comes
  from the image's label through `from_label` (the phantom: a slice labelled
  `hemorrhagic` holds a hemorrhage), or is the single lesion class;
- `values: {1: hemorrhage, 2: infarct}`: each value names its class, 0 is background.

`MaskedLoader` decodes an image and its mask together, checks them (size, values, label)
and letterboxes both through the one `Preprocessing`; its output is the image with the
raw mask as one more channel, which the decoded-image cache stores like any image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from stroke.data.decoding import decoding
from stroke.data.images import ImageLoader, letterbox
from stroke.data.preprocessing import Preprocessing
from stroke.data.samples import Sample
from stroke.errors import ConfigError, DatasetError

#: `data.masks.values` for masks whose every non-zero pixel is lesion.
BINARY = "binary"
#: Values a binary mask may hold: background, and lesion as 1 or as 255 (8-bit white).
BINARY_VALUES = frozenset({0, 1, 255})
BACKGROUND = "background"


@runtime_checkable
class MaskReadingSource(Protocol):
    """A source whose masks the PNG reader cannot decode (a NIfTI label volume's slice)."""

    def read_mask(self, sample: Sample) -> np.ndarray | None:
        """The sample's label mask, integers H x W at the image's own size; None: no mask."""
        ...


@dataclass(frozen=True)
class LesionMasks:
    """What mask values mean (`data.masks`): lesion classes and how values map to them."""

    lesion_classes: tuple[str, ...]
    #: `binary`, or {mask value: lesion class}
    values: str | Mapping[int, str | None] = BINARY
    #: binary masks with several lesion classes: {image label: lesion class}
    from_label: Mapping[str, str | None] | None = None

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.lesion_classes or ())
        object.__setattr__(self, "lesion_classes", classes)
        if not classes or len(set(classes)) != len(classes) or BACKGROUND in classes:
            raise ConfigError(
                f"data.masks.lesion_classes must name one or more distinct lesion classes "
                f"(not {BACKGROUND!r}), got {list(classes)}"
            )
        if isinstance(self.values, str):
            if self.values != BINARY:
                raise ConfigError(
                    f"data.masks.values must be {BINARY!r} or a map {{value: lesion class}}, "
                    f"got {self.values!r}"
                )
            self._check_from_label()
        else:
            object.__setattr__(self, "values", self._checked_values(self.values))
            if self.from_label:
                raise ConfigError(
                    "data.masks.from_label applies to binary masks; with data.masks.values "
                    "given as a map, each value already names its class: set from_label=null"
                )

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | LesionMasks) -> LesionMasks:
        """From `data.masks` (a mapping of lesion_classes, values, from_label)."""
        if isinstance(config, LesionMasks):
            return config
        unknown = sorted(set(config) - {"lesion_classes", "values", "from_label"})
        if unknown:
            raise ConfigError(
                f"data.masks has unknown keys {unknown}; expected lesion_classes, values, "
                "from_label"
            )
        return cls(**dict(config))

    def record(self) -> dict[str, Any]:
        """Plain values for checkpoints (the datamodule's state)."""
        values = self.values if isinstance(self.values, str) else dict(self.values)
        return {
            "lesion_classes": list(self.lesion_classes),
            "values": values,
            "from_label": dict(self.from_label) if self.from_label else None,
        }

    @property
    def num_classes(self) -> int:
        """Output channels of a segmenter: background plus each lesion class."""
        return len(self.lesion_classes) + 1

    @property
    def allowed_values(self) -> frozenset[int]:
        """The values a mask may hold."""
        if self.values == BINARY:
            return BINARY_VALUES
        return frozenset({0, *self.values})

    def label_table(self, label: str) -> np.ndarray:
        """A 256-entry table from a mask value to a class index (0 background, k lesion k)."""
        table = np.zeros(256, dtype=np.uint8)
        if self.values == BINARY:
            table[1:] = self._binary_class(label)
        else:
            for value, name in self.values.items():
                table[value] = 0 if name is None else self.lesion_classes.index(name) + 1
        return table

    def check_label(self, label: str, mask: np.ndarray, image: Path, mask_path: Path) -> None:
        """A binary mask with lesion pixels must belong to an image whose label has a lesion."""
        if self.values == BINARY and self._binary_class(label) == 0 and mask.any():
            raise DatasetError(
                f"mask {mask_path} of image {image} has lesion pixels, but the image's label "
                f"{label!r} names no lesion class in data.masks.from_label="
                f"{dict(self.from_label or {})}; map it to one of {list(self.lesion_classes)}"
            )

    # -- checks ---------------------------------------------------------------------------
    def _binary_class(self, label: str) -> int:
        """The class index a binary mask's lesion pixels get for an image label (0: none)."""
        if not self.from_label:
            return 1
        name = self.from_label.get(label)
        return 0 if name is None else self.lesion_classes.index(name) + 1

    def _check_from_label(self) -> None:
        if not self.from_label:
            if len(self.lesion_classes) > 1:
                raise ConfigError(
                    f"binary masks with several lesion classes {list(self.lesion_classes)} need "
                    "data.masks.from_label (image label -> lesion class, e.g. "
                    "{hemorrhagic: hemorrhage, ischemic: infarct})"
                )
            return
        object.__setattr__(self, "from_label", {str(k): v for k, v in self.from_label.items()})
        unknown = sorted(
            {str(v) for v in self.from_label.values() if v is not None} - set(self.lesion_classes)
        )
        if unknown:
            raise ConfigError(
                f"data.masks.from_label maps to {unknown}, which are not in "
                f"data.masks.lesion_classes={list(self.lesion_classes)}"
            )

    def _checked_values(self, values: Mapping[Any, Any]) -> dict[int, str | None]:
        checked: dict[int, str | None] = {}
        for value, name in dict(values).items():
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = -1
            if not 0 < number < 256:
                raise ConfigError(
                    f"data.masks.values has key {value!r}; keys are mask values 1..255 "
                    "(0 is background)"
                )
            if name is not None and name != BACKGROUND and str(name) not in self.lesion_classes:
                raise ConfigError(
                    f"data.masks.values maps {number} to {name!r}, which is not in "
                    f"data.masks.lesion_classes={list(self.lesion_classes)}"
                )
            checked[number] = None if name in (None, BACKGROUND) else str(name)
        return checked


def read_mask_file(path: Path, image: Path) -> np.ndarray:
    """A mask image file as integers H x W (grey, palette or 16-bit; colour only if grey)."""
    if not Path(path).exists():
        raise DatasetError(f"image {image} has no mask: {path} does not exist")
    with decoding(path, "mask"), Image.open(path) as img:
        img.load()
        mask = np.asarray(img)
    if mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[2])):
            raise DatasetError(
                f"mask {path} of image {image} is a colour image; expected a label image "
                "(one channel of integer values)"
            )
        mask = mask[..., 0]
    return mask.astype(np.int64)


class MaskedLoader:
    """Decode an image and its mask, check them, letterbox both: image channels + 1 mask channel.

    Checked before training (the cache build decodes every sample): the mask exists, has
    the image's size, holds only values of the label set, and has no lesion where the
    image's label says there is none. Every error names the image and the mask.
    """

    def __init__(
        self,
        image_loader: ImageLoader,
        preprocessing: Preprocessing,
        masks: LesionMasks,
        source: Any = None,
    ) -> None:
        self.image_loader = image_loader
        self.preprocessing = preprocessing
        self.masks = masks
        # a NIfTI source reads its label volumes itself; other masks are image files
        self.mask_source = source if isinstance(source, MaskReadingSource) else None
        # the decoded-image cache keys on the reader's code: a NIfTI source's read
        self.reader = image_loader.reader

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.image_loader.fingerprint}, {self.masks.record()})"

    def cache_settings(self) -> dict[str, object]:
        """The image loader's settings and the mask's label set: a classification cache of
        the same images keeps its own key."""
        return {
            **self.image_loader.cache_settings(),
            "masks": self.masks.record(),
            "mask_reader": type(self.mask_source).__name__ if self.mask_source else "image",
        }

    def item_files(self, sample: Sample) -> list[Path]:
        """The files the sample is decoded from, for the cache key: image and mask."""
        files = [sample.path]
        if sample.mask_path is not None and sample.mask_path.exists():
            files.append(sample.mask_path)
        return files

    def __call__(self, sample: Sample) -> np.ndarray:
        """uint8 image_size x image_size x (in_chans + 1): the image, then the raw mask."""
        image, mask = self.decode(sample)
        size = self.preprocessing.image_size
        resized = self.preprocessing.resize_mask(mask.astype(np.uint8))
        return np.concatenate([letterbox(image, size), resized[:, :, None]], axis=2)

    def decode(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8 H x W x C) and its checked mask (integers H x W), native size."""
        if sample.mask_path is None:
            raise DatasetError(
                f"image {sample.path} has no lesion mask (set data.source.mask_dir, e.g. "
                "masks for <root>/masks/<same relative path>, or data.source.mask_column)"
            )
        image = self.image_loader.decode(sample)
        mask = self._read_mask(sample)
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"mask {sample.mask_path} is {mask.shape[0]}x{mask.shape[1]} pixels but its "
                f"image {sample.path} is {image.shape[0]}x{image.shape[1]}; a mask must match "
                "its image pixel for pixel"
            )
        found = np.unique(mask)
        outside = sorted(int(v) for v in found if int(v) not in self.masks.allowed_values)
        if outside:
            raise DatasetError(
                f"mask {sample.mask_path} of image {sample.path} holds values {outside[:8]} "
                f"outside the label set {sorted(self.masks.allowed_values)} "
                f"(data.masks.values={self.masks.record()['values']})"
            )
        self.masks.check_label(sample.label, mask, sample.path, sample.mask_path)
        return image, mask

    def _read_mask(self, sample: Sample) -> np.ndarray:
        if self.mask_source is not None:
            mask = self.mask_source.read_mask(sample)
            if mask is None:
                raise DatasetError(f"image {sample.path} has no mask {sample.mask_path}")
            return mask
        return read_mask_file(sample.mask_path, sample.path)


class ImageChannels:
    """A masked loader seen as an image loader: its output without the mask channel."""

    def __init__(self, loader: Any, in_chans: int) -> None:
        self.loader = loader
        self.in_chans = in_chans

    def __call__(self, sample: Sample) -> np.ndarray:
        return np.ascontiguousarray(self.loader(sample)[:, :, : self.in_chans])


def split_channels(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A masked loader's output as (image H x W x C, raw mask H x W)."""
    return np.ascontiguousarray(stacked[:, :, :-1]), np.ascontiguousarray(stacked[:, :, -1])


def lesion_class_names(masks: LesionMasks) -> list[str]:
    """Names of the segmenter's output channels: background, then the lesion classes."""
    return [BACKGROUND, *masks.lesion_classes]
