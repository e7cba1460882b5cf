"""The torch Dataset: cached-or-decoded image, then augmentation, then a normalized tensor."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stroke.data.samples import Sample


class ImageClassificationDataset(Dataset):
    """Samples of one split as (image tensor C x H x W, class index) pairs."""

    def __init__(
        self,
        samples: Sequence[Sample],
        class_to_idx: dict[str, int],
        loader: Callable[[Sample], np.ndarray],
        transform: Callable | None = None,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
    ) -> None:
        self.samples = list(samples)
        self.targets = [class_to_idx[s.label] for s in self.samples]
        self.loader = loader
        self.transform = transform
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # the whole sample, not its path: slices of one volume share a path
        image = self.loader(self.samples[index])
        if self.transform is not None:
            image = self.transform(image=image)["image"]
            if image.ndim == 2:  # some transforms drop a single channel axis
                image = image[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        return (tensor / 255.0 - self.mean) / self.std, self.targets[index]
