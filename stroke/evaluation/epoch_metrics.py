"""The metrics logged every validation and test epoch: the report's, by the report's code.

`EpochPredictions` keeps an epoch's class probabilities and targets, gathered across
batches and DDP processes (TorchMetrics' `cat` reduction), and `epoch_scores` scores them
with `stroke.evaluation.metrics.classification_scores`, the function behind metrics.json
and the report. Keys are `<split>/<metric>` for the macro mean (or the single value) and
`<split>/<metric>/<class>` for one class, e.g. `val/f1` and `test/recall/ischemic`, for
every metric of `stroke.evaluation.metrics.METRICS`.

Its conventions too: the recall or ROC AUC of a class without images in the split (ROC
AUC also when every image is of that class) is undefined, NaN here and null in
metrics.json with the reason (`undefined_metrics`); macro means are over the classes the
split holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from stroke.evaluation.metrics import classification_scores


class EpochPredictions(Metric):
    """The class probabilities (N x K) and targets (N) of an epoch, across processes.

    An epoch of a validation or test split holds a few floats per image, far less than
    one batch of images, so keeping them all costs nothing worth counting.
    """

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("probs", [], dist_reduce_fx="cat")
        self.add_state("targets", [], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        """probs: B x K (rows sum to 1); targets: B class indices."""
        self.probs.append(probs.detach().float())
        self.targets.append(targets.detach().long())

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """(probs N x K, targets N) as NumPy arrays; empty ones for an epoch without images."""
        if isinstance(self.probs, list) and not self.probs:
            return np.zeros((0, self.num_classes)), np.zeros(0, dtype=np.int64)
        probs = dim_zero_cat(self.probs).reshape(-1, self.num_classes)
        return probs.cpu().double().numpy(), dim_zero_cat(self.targets).cpu().numpy()


def epoch_scores(
    probs: np.ndarray, targets: np.ndarray, split: str, class_names: Sequence[str]
) -> dict[str, float]:
    """`<split>/<metric>` and `<split>/<metric>/<class>` of every metric; undefined ones NaN."""
    scores = classification_scores(targets, probs, class_names)
    return {f"{split}/{name}": value for name, value in scores.items()}


def class_support(targets: np.ndarray, num_classes: int) -> list[int]:
    """Images of each class in the split."""
    return np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes).tolist()


def undefined_metrics(
    values: dict[str, float], split: str, class_names: Sequence[str], support: Sequence[int]
) -> dict[str, str]:
    """`{key: why}` for every NaN of `epoch_scores`, for metrics.json and the log."""
    total = sum(support)
    reasons = {}
    for key, value in values.items():
        if not math.isnan(value):
            continue
        cls = key.rsplit("/", 1)[-1]
        if cls in class_names:
            n = support[list(class_names).index(cls)]
            reasons[key] = (
                f"no {split} image of class {cls}" if n == 0
                else f"every {split} image is of class {cls}: no negative image"
            )  # fmt: skip
        else:
            reasons[key] = (
                f"the {split} split holds no image" if total == 0
                else f"undefined for every class of the {split} split"
            )  # fmt: skip
    return reasons
