"""The torch Dataset: cached-or-decoded image, then augmentation, then the model's input."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stroke.data.preprocessing import Preprocessing
from stroke.data.samples import Sample
from stroke.data.sampling import seed_transform


class ImageClassificationDataset(Dataset):
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
        self.samples = list(samples)
        #: 2.5D: the samples whose images are each sample's channels (stroke/data/context.py)
        self.neighbours = neighbours
        self.targets = [class_to_idx[s.label] for s in self.samples]
        self.loader = loader
        self.preprocessing = preprocessing
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        # (index, augmentation seed) from EpochSampler: the same augmentation in every run
        index, seed = index if isinstance(index, tuple) else (index, None)
        # the whole sample, not its path: slices of one volume share a path
        if self.neighbours is None:
            image = self.loader(self.samples[index])
        else:
            from stroke.data.context import stack_channels

            image = stack_channels([self.loader(self.samples[j]) for j in self.neighbours[index]])
        if self.transform is not None:
            if seed is not None:
                seed_transform(self.transform, seed)
            image = self.transform(image=image)["image"]
        return self.preprocessing.to_tensor(image), self.targets[index]
