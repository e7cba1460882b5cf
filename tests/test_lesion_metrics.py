"""Volume lesion metrics (stroke/evaluation/lesions.py): the ISLES definitions on volumes
whose answer is known by construction."""

import math

import numpy as np
import pytest

from stroke.evaluation.lesions import (
    bland_altman,
    dice,
    lesion_counts,
    remove_small_lesions,
    volume_scores,
)


def _cube(volume, corner, side, value=1):
    z, y, x = corner
    volume[z : z + side, y : y + side, x : x + side] = value
    return volume


def test_lesion_f1_counts_detected_missed_and_false_positive_lesions():
    true = np.zeros((20, 20, 20), np.uint8)
    _cube(true, (1, 1, 1), 3)  # detected
    _cube(true, (10, 10, 10), 3)  # missed
    pred = np.zeros_like(true)
    _cube(pred, (2, 2, 2), 3)  # overlaps the first
    _cube(pred, (15, 1, 15), 2)  # touches nothing: a false positive
    counts = lesion_counts(true > 0, pred > 0)
    assert (counts.true_lesions, counts.pred_lesions) == (2, 2)
    assert (counts.detected, counts.missed, counts.false_positive) == (1, 1, 1)
    assert counts.f1 == pytest.approx(1 / (1 + (1 + 1) / 2))


def test_diagonal_neighbours_are_one_lesion_in_3d():
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # 26-connectivity, as ISLES' cc3d
    assert lesion_counts(mask, mask).true_lesions == 1


def test_scores_per_class_volumes_in_ml_and_undefined_values():
    true = np.zeros((10, 10, 10), np.uint8)
    _cube(true, (0, 0, 0), 2, value=1)  # 8 voxels of class 1
    pred = true.copy()
    _cube(pred, (5, 5, 5), 1, value=1)  # one extra voxel: a false-positive lesion
    scores = volume_scores(true, pred, ["hemorrhage", "infarct"], spacing=(2.0, 1.0, 0.5))
    assert scores["volume_true_ml/hemorrhage"] == pytest.approx(8 * 1e-3)
    assert scores["absolute_volume_difference_ml/hemorrhage"] == pytest.approx(1e-3)
    assert scores["lesion_count_difference/hemorrhage"] == 1
    assert scores["dice/hemorrhage"] == pytest.approx(16 / 17)
    # class 2 absent from both: undefined, not a perfect 1 nor a 0
    assert math.isnan(scores["dice/infarct"]) and math.isnan(scores["lesion_f1/infarct"])
    assert scores["dice/any"] == scores["dice/hemorrhage"]


def test_dice_of_a_missed_lesion_is_zero_and_shapes_must_agree():
    true = _cube(np.zeros((6, 6, 6), np.uint8), (1, 1, 1), 2)
    assert dice(true > 0, np.zeros_like(true, bool)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        volume_scores(true, true[:-1], ["lesion"], (1, 1, 1))


def test_small_components_are_removed_per_class_large_ones_kept():
    labels = np.zeros((12, 12, 12), np.uint8)
    _cube(labels, (0, 0, 0), 3, value=1)  # 27 voxels
    _cube(labels, (8, 8, 8), 1, value=1)  # 1 voxel
    _cube(labels, (0, 8, 0), 2, value=2)  # 8 voxels of class 2
    kept = remove_small_lesions(labels, [2, 10], num_classes=2)
    assert (kept == 1).sum() == 27 and (kept == 2).sum() == 0
    assert (remove_small_lesions(labels, 0) == labels).all()


def test_bland_altman_bias_and_limits():
    agreement = bland_altman(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    assert agreement["bias_ml"] == pytest.approx(1.0)
    assert agreement["lower_limit_ml"] == pytest.approx(1.0)  # no spread
    assert bland_altman(np.array([]), np.array([]))["n"] == 0
