"""Batch augmentation on the device (`augmentation=gpu`): per image, black outside, train only."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import TINY, compose_train

from stroke.build import build_datamodule, build_model
from stroke.data.batch_augment import BatchAugmentation
from stroke.errors import ConfigError

MEAN, STD = [0.5], [0.25]
OFF = {"flip_p": 0.0, "affine_p": 0.0, "brightness_contrast_p": 0.0, "noise_p": 0.0}


def batch(n: int = 4, size: int = 16) -> torch.Tensor:
    """Normalised images with structure in every direction (no symmetry hides a mistake)."""
    pixels = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))
    return (pixels - MEAN[0]) / STD[0]


def test_nothing_drawn_leaves_the_batch_bit_for_bit():
    images = batch()
    out = BatchAugmentation(**OFF)(images, MEAN, STD)
    assert torch.equal(out, images)


def test_a_flip_mirrors_left_and_right_exactly():
    images = batch()
    out = BatchAugmentation(**{**OFF, "flip_p": 1.0})(images, MEAN, STD)
    torch.testing.assert_close(out, images.flip(-1), rtol=0, atol=1e-5)


def test_a_quarter_turn_is_a_rotation_of_the_pixels():
    images = batch()
    turn = BatchAugmentation(**{**OFF, "affine_p": 1.0, "rotate": [90, 90], "translate": [0, 0],
                                "scale": [1, 1]})  # fmt: skip
    out = turn(images, MEAN, STD)
    quarter = [images.rot90(k, dims=(-2, -1)) for k in (1, 3)]
    assert any(torch.allclose(out, q, atol=1e-4) for q in quarter)


def test_what_moves_in_from_outside_is_black():
    images = batch(size=20)
    shift = BatchAugmentation(**{**OFF, "affine_p": 1.0, "rotate": [0, 0], "scale": [1, 1],
                                 "translate": [0.5, 0.5]})  # fmt: skip
    out = shift(images, MEAN, STD)
    black = (0.0 - MEAN[0]) / STD[0]
    # half the width moved in from one side: those columns are air
    edge = (
        out[..., :, :9] if torch.allclose(out[..., :, :9], torch.tensor(black)) else out[..., -9:]
    )
    torch.testing.assert_close(edge, torch.full_like(edge, black))


def test_every_image_draws_its_own_parameters():
    images = batch(1).repeat(32, 1, 1, 1)
    torch.manual_seed(0)
    out = BatchAugmentation()(images, MEAN, STD)
    distinct = {tuple(image.flatten()[:64].round(decimals=3).tolist()) for image in out}
    assert len(distinct) > 16
    assert out.min() >= (0 - MEAN[0]) / STD[0] - 1e-5 and out.max() <= (1 - MEAN[0]) / STD[0] + 1e-5


@pytest.mark.parametrize(
    ("key", "value"), [("flip_p", 1.5), ("rotate", [10, -10]), ("scale", [0, 1]), ("noise_std", 3)]
)
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"augmentation.{key}"):
        BatchAugmentation(**{key: value})


def test_augmentation_gpu_runs_on_training_batches_only(phantom_dir, tmp_path):
    cfg = compose_train([*TINY, f"data.root={phantom_dir}", "augmentation=gpu"], tmp_path)
    dm = build_datamodule(cfg)
    assert isinstance(dm.batch_transform, BatchAugmentation) and dm.train_transform is None
    dm.setup("fit")
    images, targets = next(iter(dm.val_dataloader()))
    torch.manual_seed(0)
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer((images, targets), 0)[0] is images
    dm.trainer = SimpleNamespace(training=True)
    augmented, same_targets = dm.on_after_batch_transfer((images, targets), 0)
    assert augmented.shape == images.shape and same_targets is targets
    assert not torch.equal(augmented, images)
    # and a real fit takes it through Lightning's hook
    dm.trainer = None
    model = build_model(cfg, dm)
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
