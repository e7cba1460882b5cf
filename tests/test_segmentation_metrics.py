"""Segmentation metrics: the epoch logs and the report give the same values for every
metric, and Dice and IoU agree with TorchMetrics'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.segmentation import DiceScore

from stroke.tasks.segmentation.metrics import (
    COUNT_FIELDS,
    METRICS,
    SegmentationCounts,
    epoch_scores,
    image_counts,
    lesion_counts,
    scores_from_counts,
)

LESIONS = ["hemorrhage", "infarct"]


def random_masks(seed: int, n: int = 6, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Blobby true masks and noisy predictions of 3 classes (0 background)."""
    rng = np.random.default_rng(seed)
    true = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        for _ in range(rng.integers(0, 3)):
            r, c, h, w = rng.integers(0, size - 6, 4)
            true[i, r : r + 2 + h % 6, c : c + 2 + w % 6] = rng.integers(1, 3)
    pred = true.copy()
    flip = rng.random(true.shape) < 0.08
    pred[flip] = rng.integers(0, 3, flip.sum())
    return pred, true


def report_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """The report's way: per-image counts, summed over the split."""
    counts = [image_counts(p, t, 3) for p, t in zip(pred, true, strict=True)]
    summed = {k: np.sum([c[k] for c in counts], axis=0) for k in COUNT_FIELDS}
    return scores_from_counts(summed, len(pred), LESIONS)


def logged_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """The validation loop's way: counts accumulated over two batches."""
    metric = SegmentationCounts(3)
    for half in (slice(0, 3), slice(3, None)):
        metric.update(torch.from_numpy(pred[half]), torch.from_numpy(true[half]))
    return epoch_scores(*metric.compute(), "test", LESIONS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_epoch_metric_equals_the_report(seed):
    pred, true = random_masks(seed)
    if seed == 2:  # no infarct anywhere: its Dice, IoU and lesion sensitivity are undefined
        pred[pred == 2], true[true == 2] = 0, 0
    logged, reported = logged_scores(pred, true), report_scores(pred, true)
    names = {m.name for m in METRICS} | {f"{m.name}/{c}" for m in METRICS for c in LESIONS}
    assert set(reported) == names and set(logged) == {f"test/{k}" for k in names}
    for name in sorted(names):
        assert logged[f"test/{name}"] == pytest.approx(reported[name], nan_ok=True), name
    assert np.isnan(reported["dice/infarct"]) == (seed == 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_dice_and_iou_agree_with_torchmetrics(seed):
    pred, true = (torch.from_numpy(m) for m in random_masks(seed))
    dice = DiceScore(
        3, include_background=False, average="none", aggregation_level="global",
        input_format="index",
    )(pred, true)  # fmt: skip
    iou = MulticlassJaccardIndex(3, average="none")(pred, true)[1:]  # 0 is the background
    scores = report_scores(pred.numpy(), true.numpy())
    for k, cls in enumerate(LESIONS):
        assert scores[f"dice/{cls}"] == pytest.approx(float(dice[k]), abs=1e-6)
        assert scores[f"iou/{cls}"] == pytest.approx(float(iou[k]), abs=1e-6)


def test_dice_and_iou_are_global_over_the_split():
    true = np.zeros((2, 4, 4), dtype=np.int64)
    pred = np.zeros_like(true)
    true[0, :2, :2] = 1  # 4 hemorrhage pixels on slice 0, all found
    pred[0, :2, :2] = 1
    true[1, :, :] = 2  # 16 infarct pixels on slice 1, half found
    pred[1, :2, :] = 2
    counts = [image_counts(p, t, 3) for p, t in zip(pred, true, strict=True)]
    summed = {k: np.sum([c[k] for c in counts], axis=0) for k in COUNT_FIELDS}
    scores = scores_from_counts(summed, 2, LESIONS)
    assert scores["dice/hemorrhage"] == 1.0
    assert scores["dice/infarct"] == pytest.approx(2 * 8 / (2 * 8 + 8))
    assert scores["iou/infarct"] == pytest.approx(8 / 16)
    assert scores["dice"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_lesions_are_connected_components():
    true = np.zeros((10, 10), dtype=bool)
    pred = np.zeros_like(true)
    true[1:3, 1:3] = True  # lesion A, found by one pixel
    true[6:8, 6:8] = True  # lesion B, missed
    pred[2, 2] = True
    pred[5, 0] = True  # a false positive far from any lesion
    pred[0, 9] = pred[1, 8] = True  # one more, diagonal pixels are one lesion
    assert lesion_counts(pred, true) == (2, 1, 2)


def test_a_class_absent_from_truth_and_prediction_is_left_out_of_the_mean():
    true = np.zeros((1, 8, 8), dtype=np.int64)
    true[0, :4, :4] = 1
    counts = image_counts(true[0], true[0], 3)
    scores = scores_from_counts(counts, 1, LESIONS)
    assert np.isnan(scores["dice/infarct"]) and scores["dice"] == 1.0
