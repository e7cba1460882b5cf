"""One preprocessing contract: training, checkpoints and prediction read an image the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_class_folders

from stroke.data import FolderSource, StrokeDataModule
from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError
from stroke.inference.predictor import predict_files


def test_the_record_rebuilds_the_same_preprocessing():
    windows = ({"width": 80.0, "level": 40.0}, {"width": 2800.0, "level": 600.0}, "minmax")
    original = Preprocessing(96, 3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], windows)
    assert Preprocessing.from_record(original.record()) == original
    # an older checkpoint records no normalisation: the defaults the datamodule used then
    older = Preprocessing.from_record({"image_size": 64, "in_chans": 1})
    assert (older.mean, older.std) == ((0.5,), (0.25,))


def test_normalisation_round_trips_to_the_displayed_image():
    prep = Preprocessing(16, 3, [0.2, 0.5, 0.8], [0.1, 0.2, 0.3])
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tensor = prep.to_tensor(image)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    assert float(tensor[1].mean()) == pytest.approx((image[..., 1].mean() / 255 - 0.5) / 0.2)
    np.testing.assert_array_equal(prep.to_display(tensor), image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 4, "in_chans": 1}, "data.image_size=4: expected an integer >= 8"),
        ({"image_size": 32, "in_chans": 2}, r"data.in_chans=2: expected one of \[1, 3\]"),
        ({"image_size": 32, "in_chans": 3, "mean": [0.5, 0.5]}, "data.mean has 2 values"),
        ({"image_size": 32, "in_chans": 1, "std": 0.0}, "data.std must be > 0"),
        ({"image_size": 32, "in_chans": 1, "mean": "grey"}, "data.mean must be a number"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Preprocessing(**kwargs)


def test_prediction_sees_exactly_the_tensor_training_sees(tmp_path):
    """No train/serve skew: the same file gives the same input in the dataset and predict."""
    root = make_class_folders(tmp_path / "data", {"normal": 4, "stroke": 4}, size=40)
    dm = StrokeDataModule(
        FolderSource(root), image_size=24, in_chans=3, mean=[0.3, 0.4, 0.5], std=0.2,
        num_workers=0, cache=False, leakage="off", val_fraction=0.25, test_fraction=0.25,
    )  # fmt: skip
    dm.setup("fit")
    dataset = dm.datasets["val"]
    trained_on = torch.stack([dataset[i][0] for i in range(len(dataset))])

    def identity(batch: np.ndarray) -> np.ndarray:  # a "model" that returns its input's mean
        return batch.reshape(len(batch), -1)[:, :2].copy()

    prep = Preprocessing.from_record(dm.state_dict())
    files = [s.path for s in dataset.samples]
    loader = prep.file_loader()
    predicted_inputs = torch.stack([torch.from_numpy(prep.normalize(loader(f))) for f in files])
    torch.testing.assert_close(predicted_inputs, trained_on)
    # and predict_files goes through that same loader
    (batch,) = list(predict_files(files, prep, identity, keep_images=True, progress=False))
    torch.testing.assert_close(torch.from_numpy(np.stack([r.tensor for r in batch])), trained_on)
