"""Offline transfer learning: `pretrained=true` reads the weights directory before timm's hub."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from stroke.errors import ConfigError
from stroke.models import create_model
from stroke.models.factory import WEIGHTS_DIR_ENV, find_local_weights

NAME = "test_resnet"  # timm's tiny test architecture


def _weights_file(path, fill: float):
    """A state dict of NAME, every float tensor set to `fill`, written where the test says."""
    net = timm.create_model(NAME, pretrained=False)
    state = {
        k: torch.full_like(v, fill) if v.is_floating_point() else v
        for k, v in net.state_dict().items()
    }
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


def test_pretrained_reads_the_file_named_after_the_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    _weights_file(tmp_path / f"{NAME}.safetensors", 0.25)
    _weights_file(tmp_path / "other_net.safetensors", 0.75)  # another backbone's: not read
    net = create_model(NAME, num_classes=2, in_chans=3, pretrained=True)
    body = [(k, v) for k, v in net.state_dict().items() if v.is_floating_point()]
    head = {k for k, _ in body if k.startswith(net.default_cfg["classifier"])}
    for key, value in body:
        if key not in head:  # the classifier is fresh: 2 classes, not the file's
            assert torch.all(value == 0.25), key
    fresh = create_model(NAME, num_classes=2, in_chans=3, pretrained=False)
    assert not torch.equal(next(iter(fresh.parameters())), next(iter(net.parameters())))


def test_a_tagged_file_is_found_and_one_channel_stems_are_adapted(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    _weights_file(tmp_path / f"{NAME}.a1_in1k.pth", 0.5)
    assert find_local_weights(NAME) == tmp_path / f"{NAME}.a1_in1k.pth"
    net = create_model(NAME, num_classes=2, in_chans=1, pretrained=True)
    first = next(iter(net.parameters()))
    assert first.shape[1] == 1 and torch.allclose(first, torch.full_like(first, 1.5))  # 3 x 0.5


def test_without_a_file_offline_the_error_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "empty"))
    assert find_local_weights(NAME) is None

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match=r"no test_resnet.safetensors in the weights directory"):
        create_model(NAME, num_classes=2, pretrained=True)


def test_prefetch_writes_what_the_lookup_reads(tmp_path, monkeypatch):
    from stroke.models import prefetch

    real = timm.create_model

    def fake_hub(name, pretrained=False, **kwargs):  # no network: "download" fixed weights
        net = real(name, pretrained=False, **kwargs)
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(0.125)
        return net

    monkeypatch.setattr(timm, "create_model", fake_hub)
    (path,) = prefetch.prefetch([NAME], tmp_path / "weights")
    monkeypatch.setattr(timm, "create_model", real)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    assert find_local_weights(NAME) == path
    net = create_model(NAME, num_classes=5, in_chans=3, pretrained=True)
    assert torch.all(next(iter(net.parameters())) == 0.125)
    assert prefetch.main(["cnn_small", "--dir", str(tmp_path)]) == 2  # no published weights


def test_a_stroke_train_checkpoint_starts_a_new_run(trained_run):
    # fine-tuning from an earlier run (the phantom, another hospital's data): its trained
    # network, every layer but the classifier, which is fresh for the new classes
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    trained = torch.load(ckpt, weights_only=True)["state_dict"]
    assert trained["net.fc.weight"].shape[0] == 3  # the phantom's three classes
    net = create_model("resnet10t", num_classes=2, in_chans=1, weights_path=ckpt)
    for key, value in net.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 2
        else:
            assert torch.equal(value, trained[f"net.{key}"]), key
    # three channels from a one-channel run: timm spreads the first convolution over them
    rgb = create_model("resnet10t", num_classes=2, in_chans=3, weights_path=ckpt)
    stem = trained["net.conv1.0.weight"]
    assert rgb.state_dict()["conv1.0.weight"].shape[1] == 3
    torch.testing.assert_close(rgb.state_dict()["conv1.0.weight"].sum(1, keepdim=True), stem)


def test_a_checkpoint_of_another_backbone_is_refused(trained_run):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    with pytest.raises(
        ConfigError, match=r"trained backbone 'resnet10t', not model\.backbone\.name='cnn_small'"
    ):
        create_model("cnn_small", num_classes=2, weights_path=ckpt)
