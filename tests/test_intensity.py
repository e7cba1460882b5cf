"""Intensity preprocessing (`data.equalize`, `data.normalization`, `data.mean=dataset`):
applied by the one Preprocessing in training and at inference, recorded in checkpoints."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stroke.data import FolderSource, StrokeDataModule
from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError

IMAGE = np.random.default_rng(0).integers(20, 120, (32, 32, 1), dtype=np.uint8)


def test_clahe_and_histogram_equalisation_come_before_the_normalisation():
    for name, expected in (
        ("clahe", cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(IMAGE[:, :, 0])),
        ("histogram", cv2.equalizeHist(IMAGE[:, :, 0])),
    ):
        prep = Preprocessing(32, 1, 0.5, 0.25, equalize=name)
        out = prep.normalize(IMAGE)
        np.testing.assert_allclose(out[0], (expected / 255.0 - 0.5) / 0.25, atol=1e-5)
        again = Preprocessing.from_record(prep.record())
        assert again == prep and again.record()["equalize"] == name


def test_per_image_normalisation_gives_each_image_zero_mean_unit_spread():
    prep = Preprocessing(32, 1, normalization="image")
    out = prep.normalize(IMAGE)
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1.0, abs=1e-3)
    assert prep.to_display(out).shape == (32, 32, 1)
    older = Preprocessing.from_record({"image_size": 32, "in_chans": 1})  # before these keys
    assert older.equalize is None and older.normalization == "fixed"
    with pytest.raises(ConfigError, match="data.equalize='gamma': expected one of"):
        Preprocessing(32, 1, equalize="gamma")
    with pytest.raises(ConfigError, match="data.normalization='batch': expected one of"):
        Preprocessing(32, 1, normalization="batch")


def test_dataset_statistics_are_measured_on_training_images_and_recorded(phantom_dir):
    dm = StrokeDataModule(
        FolderSource(phantom_dir), image_size=32, num_workers=0, cache=False, leakage="off",
        mean="dataset", std="dataset", equalize="clahe",
    )  # fmt: skip
    dm.setup("fit")
    train = np.stack(
        [dm.preprocessing.equalized(dm.loader(s)) for s in dm.split_samples("train")]
    ).astype(np.float64)
    assert dm.preprocessing.mean[0] == pytest.approx(train.mean() / 255, rel=1e-6)
    assert dm.preprocessing.std[0] == pytest.approx(train.std() / 255, rel=1e-4)
    # the checkpoint's record gives prediction the same numbers and the same equalisation
    recorded = Preprocessing.from_record(dm.state_dict())
    assert recorded == dm.preprocessing
    image, _ = dm.datasets["val"][0]
    raw = dm.loader(dm.split_samples("val")[0])
    np.testing.assert_allclose(recorded.normalize(raw), image.numpy(), atol=1e-6)
