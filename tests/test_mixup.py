"""`model.mixup`: timm's Mixup/CutMix on training batches, and its config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stroke.errors import ConfigError
from stroke.tasks.classification.module import StrokeClassifier


def _classifier(**mixup) -> StrokeClassifier:
    torch.manual_seed(0)
    return StrokeClassifier(backbone={"name": "cnn_small"}, num_classes=2, mixup=mixup).train()


def _seen_by_net(model: StrokeClassifier, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The images the network was given in a training step, and the step's loss."""
    seen = []
    hook = model.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        loss = model.training_step(batch, 0)
    finally:
        hook.remove()
    return seen[0], loss


def test_mixup_trains_on_mixed_pairs_with_mixed_labels():
    model = _classifier(mixup_alpha=0.4)
    images, targets = torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 1, 0])
    seen, loss = _seen_by_net(model, (images.clone(), targets))
    # timm mixes each image with its mirror in the batch: seen = lam * x + (1 - lam) * x[::-1]
    flipped = images.flip(0)
    lam = ((seen - flipped) * (images - flipped)).sum() / ((images - flipped) ** 2).sum()
    assert 0.0 < lam < 1.0
    torch.testing.assert_close(seen, lam * images + (1 - lam) * flipped, atol=1e-5, rtol=1e-4)
    onehot = F.one_hot(targets, 2).float()
    soft = lam * onehot + (1 - lam) * onehot.flip(0)
    with torch.no_grad():
        expected = F.cross_entropy(model.net(seen), soft)
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=1e-4)


def test_without_mixup_or_on_an_odd_batch_the_net_sees_the_images_as_they_are():
    images, targets = torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 1])
    for model in (_classifier(), _classifier(mixup_alpha=0.4)):  # timm mixes even batches
        seen, _ = _seen_by_net(model, (images.clone(), targets))
        assert torch.equal(seen, images)


def test_mixup_off_builds_no_mixer():
    assert _classifier(mixup_alpha=0.0, cutmix_alpha=0.0).mixup is None
    assert _classifier(cutmix_alpha=1.0).mixup is not None


@pytest.mark.parametrize(
    ("mixup", "words"),
    [
        ({"mixup_alpha": -0.2}, r"model\.mixup\.mixup_alpha=-0\.2: expected a number >= 0"),
        ({"mixup_alpha": "lots"}, r"model\.mixup\.mixup_alpha='lots': expected a number"),
        ({"mixup_alpha": 0.2, "prob": 1.5}, r"model\.mixup\.prob=1\.5: expected a probability"),
        ({"alpha": 0.2}, r"unknown key model\.mixup\.alpha: expected mixup_alpha"),
    ],
)
def test_bad_mixup_settings_are_named(mixup, words):
    with pytest.raises(ConfigError, match=words):
        StrokeClassifier(backbone={"name": "cnn_small"}, num_classes=2, mixup=mixup)
