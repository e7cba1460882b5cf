"""The torch Dataset: cached-or-decoded image, then augmentation, then the model's input."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stroke.data.context import stack_channels
from stroke.data.preprocessing import Preprocessing
from stroke.data.samples import Sample
from stroke.data.sampling import seed_transform


class SampleDataset(Dataset):
    """What every task's dataset of one split shares: its samples, their image-level class
    indices, the (cached or decoding) loader, the preprocessing and the seeded augmentation.

    A task's dataset subclasses this and says what an item is (`__getitem__`).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        class_to_idx: dict[str, int],
        loader: Callable[[Sample], np.ndarray],
        preprocessing: Preprocessing,
        transform: Callable | None = None,
    ) -> None:
        self.samples = list(samples)
        self.targets = self.targets_of(self.samples, class_to_idx)
        self.loader = loader
        self.preprocessing = preprocessing
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def targets_of(self, samples: Sequence[Sample], class_to_idx: dict[str, int]) -> list:
        """Each sample's image-level target: its class index (a multi-label task: a vector)."""
        return [class_to_idx[s.label] for s in samples]

    def augment(self, seed: int | None, **targets: np.ndarray) -> dict[str, np.ndarray]:
        """The transform applied to `targets` (image, and mask for segmenters), seeded when
        the sampler gave a seed; the targets as they are without a transform."""
        if self.transform is None:
            return targets
        if seed is not None:
            seed_transform(self.transform, seed)
        return self.transform(**targets)

    def __getitem__(self, index: int | tuple[int, int]):
        raise NotImplementedError


class ImageClassificationDataset(SampleDataset):
    """Samples of one split as (image tensor C x H x W, class index) pairs."""

    def __init__(
        self,
        samples: Sequence[Sample],
        class_to_idx: dict[str, int],
        loader: Callable[[Sample], np.ndarray],
        preprocessing: Preprocessing,
        transform: Callable | None = None,
        neighbours: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(samples, class_to_idx, loader, preprocessing, transform)
        #: 2.5D: the samples whose images are each sample's channels (stroke/data/context.py)
        self.neighbours = neighbours

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = split_index(index)
        # the whole sample, not its path: slices of one volume share a path
        if self.neighbours is None:
            image = self.loader(self.samples[index])
        else:
            image = stack_channels([self.loader(self.samples[j]) for j in self.neighbours[index]])
        image = self.augment(seed, image=image)["image"]
        return self.preprocessing.to_tensor(image), self.targets[index]


def split_index(index: int | tuple[int, int]) -> tuple[int, int | None]:
    """(index, augmentation seed) from EpochSampler, or a plain index without a seed: the
    seed makes an image's augmentation the same in every run and after a resume."""
    return index if isinstance(index, tuple) else (index, None)
