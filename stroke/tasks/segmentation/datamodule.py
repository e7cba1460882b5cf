"""The segmentation datamodule: the classification one, with a lesion mask beside every image.

Sources, class maps, patient-aware splits, folds, the leakage check and the decoded-image
cache are those of `StrokeDataModule`; what changes is what a sample decodes to (image and
mask, checked and letterboxed together by `MaskedLoader`) and what a batch holds
(image, mask of class indices, image class).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stroke.data.datamodule import StrokeDataModule
from stroke.data.dataset import SampleDataset, split_index
from stroke.data.preprocessing import Preprocessing
from stroke.data.samples import Sample
from stroke.tasks.segmentation.masks import ImageChannels, LesionMasks, MaskedLoader, split_channels


class LesionSegmentationDataset(SampleDataset):
    """Samples of one split as (image C x H x W, mask H x W of class indices, image class).

    The loader gives the letterboxed image with its raw mask as a last channel; the mask's
    values become class indices through the image label's table (`LesionMasks`), then
    augmentation moves image and mask together (albumentations: geometry on both,
    intensity on the image alone).
    """

    def __init__(
        self,
        samples: list[Sample],
        class_to_idx: dict[str, int],
        loader: Callable[[Sample], np.ndarray],
        preprocessing: Preprocessing,
        masks: LesionMasks,
        transform: Callable | None = None,
    ) -> None:
        super().__init__(samples, class_to_idx, loader, preprocessing, transform)
        self.tables = {label: masks.label_table(label) for label in {s.label for s in samples}}

    def image_and_mask(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The letterboxed uint8 image and its mask of class indices, before augmentation."""
        sample = self.samples[index]
        image, raw = split_channels(self.loader(sample))
        return image, self.tables[sample.label][raw]

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, seed = split_index(index)
        image, mask = self.image_and_mask(index)
        moved = self.augment(seed, image=image, mask=mask)
        image, mask = moved["image"], moved["mask"]
        mask_tensor = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
        return self.preprocessing.to_tensor(image), mask_tensor, self.targets[index]


class LesionSegmentationDataModule(StrokeDataModule):
    """`StrokeDataModule` for segmentation: `masks` (data.masks) says what mask values mean.

    Every other argument is `StrokeDataModule`'s; the source must give each sample its
    mask (`data.source.mask_dir`, `data.source.mask_column`, NIfTI label volumes).
    """

    def __init__(self, *args: Any, masks: Mapping[str, Any] | LesionMasks, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.masks = LesionMasks.from_config(masks)
        self.loader = MaskedLoader(self.loader, self.preprocessing, self.masks, self.source)

    @property
    def lesion_classes(self) -> list[str]:
        """The lesion classes, in the order of the segmenter's channels 1..K."""
        return list(self.masks.lesion_classes)

    def model_arguments(self) -> dict[str, Any]:
        """The classifier's arguments (the joint head uses them) and the lesion classes."""
        return {**super().model_arguments(), "lesion_classes": self.lesion_classes}

    def state_dict(self) -> dict:
        """Preprocessing, classes and what mask values mean (plain values, in checkpoints)."""
        return {**super().state_dict(), "masks": self.masks.record()}

    def _dataset(self, samples, class_to_idx, loader, transform) -> LesionSegmentationDataset:
        return LesionSegmentationDataset(
            samples, class_to_idx, loader, self.preprocessing, self.masks, transform
        )

    def _check_decoding(self, loader: Callable) -> None:
        """Without a cache: read every image and mask now, so a bad one fails before training."""
        for sample in tqdm(self.samples, desc="checking masks", unit="img", leave=False):
            loader.decode(sample)

    def _image_view(self, loader: Callable) -> Callable:
        return ImageChannels(loader, self.in_chans)
