"""Grad-CAM: target layers, side effects, the TensorBoard callback, and a check against truth."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from stroke.errors import ConfigError
from stroke.explain.gradcam import cam_peak, default_target_layer, grad_cams, overlay
from stroke.models import create_model
from stroke.synth import PhantomConfig, generate_phantom


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("cnn_small", "features.4.act"),
        ("cnn_bn", "features.3.act"),
        ("resnet18", "layer4"),
    ],
)
def test_default_target_layer_per_architecture(name, layer):
    net = create_model(name, num_classes=2, in_chans=1)
    assert default_target_layer(net) == layer
    cams = grad_cams(net, torch.randn(2, 1, 64, 64), [0, 1])
    assert cams.shape == (2, 64, 64) and cams.min() >= 0 and cams.max() <= 1


@pytest.mark.parametrize(
    ("name", "size", "layer"),
    [
        ("resnet18", 64, "layer2"),
        ("resnet18", 224, "layer4"),
        ("cnn_small", 64, "features.3.act"),
        ("cnn_small", 150, "features.4.act"),
        ("cnn_bn", 64, "features.3.act"),
    ],
)
def test_small_inputs_get_a_stage_with_a_usable_map(name, size, layer):
    """The deepest stage whose heat map is at least 7x7 at that input size."""
    net = create_model(name, num_classes=2, in_chans=1)
    assert default_target_layer(net, size) == layer


def test_target_layer_override_and_a_wrong_name():
    net = create_model("cnn_small", num_classes=2, in_chans=1)
    cams = grad_cams(net, torch.randn(1, 1, 64, 64), [1], target_layer="features.2.act")
    assert cams.shape == (1, 64, 64)
    with pytest.raises(ConfigError, match="target_layer='features.9' is not a module"):
        grad_cams(net, torch.randn(1, 1, 64, 64), [1], target_layer="features.9")


def test_grad_cam_leaves_training_state_and_gradients_alone():
    """The callback runs mid-training: mode and parameter gradients must survive it."""
    net = create_model("cnn_bn", num_classes=3, in_chans=1).train()
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    before = [p.grad.clone() for p in net.parameters()]
    with torch.inference_mode():  # how Lightning runs validation hooks
        grad_cams(net, torch.randn(2, 1, 32, 32), [1, 2])
    assert net.training
    for p, grad in zip(net.parameters(), before, strict=True):
        torch.testing.assert_close(p.grad, grad)


def test_overlay_is_rgb_at_the_image_size():
    image = np.zeros((40, 40, 1), np.uint8)
    cam = np.zeros((20, 20), np.float32)
    cam[5, 5] = 1
    out = overlay(image, cam)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8


def test_training_logs_grad_cam_overlays_to_tensorboard(trained_run):
    events = list((trained_run / "tensorboard").glob("*/events.out.tfevents.*"))
    assert any(b"val/gradcam" in path.read_bytes() for path in events)


def _conspicuous_phantom(root):
    """Images (32 px), lesion masks, labels and patient ids of a 2-class phantom whose
    lesions are painted at bone density.

    The phantom's own haemorrhages are 2.5-40 HU over grey matter, some a few pixels
    wide: a model trained for seconds cannot learn them and memorizes patients instead
    (hemorrhagic vs normal at 32 px, 15 epochs: train accuracy 1.0, held-out ~0.4). A
    model that does not use the lesion has no reason to point at it, and the test would
    check the model, not the explanation. Painting each lesion (its mask is the truth)
    at 255 leaves the lesion as the only evidence of the class.
    """
    from stroke.data.images import ImageLoader

    generate_phantom(
        root,
        PhantomConfig(
            n_patients=80,
            slices_per_patient=4,
            image_size=64,
            seed=1,
            classes=("normal", "hemorrhagic"),
        ),
        progress=False,
    )
    with (root / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    loader = ImageLoader(32, 1)  # the datamodule's decode + letterbox
    images = np.stack([loader(root / r["path"])[..., 0] for r in rows])
    masks = np.stack([loader(root / r["mask_path"])[..., 0] > 127 for r in rows])
    images = np.where(masks, 255, images).astype(np.float32)
    tensors = torch.from_numpy((images / 255 - 0.5) / 0.25)[:, None]
    labels = torch.tensor([r["label"] == "hemorrhagic" for r in rows], dtype=torch.long)
    return tensors, images, masks, labels, np.array([r["patient_id"] for r in rows])


def _train_briefly(tensors, labels, train_idx, epochs=12, seed=0) -> torch.nn.Module:
    """cnn_bn with three blocks, AdamW, cosine decay: about 180 steps of 16 images."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = create_model(
        "cnn_bn", num_classes=2, in_chans=1, channels=(32, 64, 128), block_drop_rate=0.0
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    steps = epochs * int(np.ceil(len(train_idx) / 16))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    net.train()
    for _ in range(epochs):
        order = rng.permutation(train_idx)
        for start in range(0, len(order), 16):
            batch = order[start : start + 16]
            loss = torch.nn.functional.cross_entropy(net(tensors[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


@pytest.mark.slow
def test_grad_cam_peak_lies_on_the_lesion(tmp_path):
    """Most lesion images get their Grad-CAM peak within 4 px of the lesion mask (at 32 px).

    Required: >= 60 % of the lesion images, and >= 3x the rate of a peak placed at random
    in the head (about 17 %). Why 4 px: the automatic target layer of this cnn_bn (three
    blocks) is the last block's activation, 8x8 at 32 px, so the heat map is made of
    4-pixel cells upsampled bilinearly: one cell is as close as it can resolve. Why not
    100 %: some lesions are 1-2 px at 32 px, and a briefly trained model also leans on
    their surroundings. Measured with training seeds 0-3: 88, 74, 81 and 81 %.
    The model must first have learned the lesions (held-out patients, accuracy >= 0.8),
    otherwise a miss would say nothing about the explanation.
    """
    tensors, images, masks, labels, patients = _conspicuous_phantom(tmp_path)
    unique = np.unique(patients)
    rng = np.random.default_rng(0)
    held_out = np.isin(patients, rng.choice(unique, len(unique) // 4, replace=False))
    net = _train_briefly(tensors, labels, np.nonzero(~held_out)[0])
    with torch.no_grad():
        predicted = net(tensors).argmax(1)
    accuracy = float((predicted[held_out] == labels[held_out]).float().mean())
    assert accuracy >= 0.8, f"the model did not learn the lesions (held-out accuracy {accuracy})"

    lesion = np.nonzero((labels.numpy() == 1) & masks.any(axis=(1, 2)))[0]
    cams = grad_cams(net, tensors[lesion], [1] * len(lesion))
    grid = np.indices((32, 32)).reshape(2, -1).T
    hits, chance = [], []
    for index, cam in zip(lesion, cams, strict=True):
        lesion_px = np.argwhere(masks[index])
        near = np.min(np.linalg.norm(grid[:, None] - lesion_px[None], axis=2), axis=1) <= 4
        hits.append(near.reshape(32, 32)[cam_peak(cam)])
        chance.append(near[images[index].reshape(-1) > 0].mean())
    assert len(hits) >= 100
    rate, chance_rate = float(np.mean(hits)), float(np.mean(chance))
    assert rate >= 0.6, f"Grad-CAM peak near the lesion in {rate:.0%} of {len(hits)} images"
    assert rate >= 3 * chance_rate, f"{rate:.0%} vs {chance_rate:.0%} by chance"
