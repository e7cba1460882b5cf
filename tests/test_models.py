"""The model factory: every backbone by name, pretrained weights online and offline."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from stroke.errors import ConfigError
from stroke.models import create_model

BACKBONES = ["cnn_small", "cnn_bn", "resnet18", "resnet50", "efficientnet_b0", "efficientnet_b3"]


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_backbone_runs_forward_and_backward(name, in_chans):
    model = create_model(name, num_classes=3, in_chans=in_chans)
    images = torch.randn(2, in_chans, 64, 64)
    logits = model(images)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    first_conv = next(p for p in model.parameters() if p.ndim == 4)
    assert first_conv.shape[1] == in_chans
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_custom_cnns_are_timm_models():
    # the same factory call builds ours and timm's: swapping is a string
    for name in ("cnn_small", "cnn_bn"):
        assert timm.is_model(name)
        model = timm.create_model(name, num_classes=2, in_chans=1)
        assert model.get_classifier().out_features == 2


def test_cnn_small_matches_the_published_shape_at_150px():
    model = create_model("cnn_small", num_classes=2, in_chans=1)
    features = model.forward_features(torch.zeros(1, 1, 150, 150))
    assert features.shape == (1, 128, 4, 4)  # flatten 2048 -> dense 256, as published
    assert model.head.hidden.in_features == 2048 and model.head.hidden.out_features == 256


def test_max_pooled_head_finds_a_lesion_wherever_it_lies():
    # head_pool=max: a small bright spot moved across the image (by whole strides of the
    # network, 32 px, and away from the border its receptive field would reach) gives the
    # same logits; the published 4x4 average head does not
    def spot_at(row, col):
        image = torch.zeros(1, 1, 256, 256)
        image[..., row : row + 6, col : col + 6] = 1.0
        return image

    torch.manual_seed(0)
    pooled = create_model("cnn_small", num_classes=2, head_pool="max", head_pool_size=1).eval()
    torch.manual_seed(0)
    published = create_model("cnn_small", num_classes=2).eval()
    with torch.no_grad():
        a, b = spot_at(96, 96), spot_at(128, 160)
        torch.testing.assert_close(pooled(a), pooled(b))
        assert not torch.allclose(published(a), published(b))
        assert not torch.allclose(pooled(a), pooled(torch.zeros(1, 1, 256, 256)))
    assert pooled.head.hidden.in_features == 128


def test_unknown_head_pooling_is_named():
    with pytest.raises(ConfigError, match=r"head_pool='mean'.*avg, max"):
        create_model("cnn_small", num_classes=2, head_pool="mean")


def test_any_timm_architecture_by_name():
    model = create_model("mobilenetv3_small_050", num_classes=2, in_chans=1)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ConfigError, match=r"resnt18.*did you mean resnet18"):
        create_model("resnt18", num_classes=2)


def test_local_weights_file_loads_offline(tmp_path):
    # an "ImageNet" checkpoint the test makes itself: 3-channel stem, 1000-class head
    source = timm.create_model("resnet18", num_classes=1000, in_chans=3)
    weights = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(weights))

    model = create_model("resnet18", num_classes=2, in_chans=1, weights_path=weights)
    # the stem is adapted to one channel by summing the RGB filters, like timm does online
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.fc.out_features == 2  # a fresh classifier for our classes


def test_local_weights_for_a_custom_cnn(tmp_path):
    source = create_model("cnn_bn", num_classes=5, in_chans=1)
    weights = tmp_path / "cnn_bn.pth"
    torch.save(source.state_dict(), weights)
    model = create_model("cnn_bn", num_classes=2, in_chans=1, weights_path=weights)
    torch.testing.assert_close(model.features[2].conv.weight, source.features[2].conv.weight)
    assert model.get_classifier().out_features == 2


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"weights_path=.*nope\.pth.*does not exist"):
        create_model("resnet18", num_classes=2, weights_path=tmp_path / "nope.pth")


def test_offline_download_says_how_to_load_weights_from_disk(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"could not load pretrained weights.*weights_path"):
        create_model("resnet18", num_classes=2, pretrained=True)


def test_custom_cnn_has_no_download():
    with pytest.raises(ConfigError, match="no published weights"):
        create_model("cnn_small", num_classes=2, pretrained=True)
