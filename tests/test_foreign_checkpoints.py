"""Checkpoints that are not ours, or not this shape, get one line saying what the file is and,
for bare weights, the key that would use them (issue 26)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from stroke.checkpoint import read_checkpoint
from stroke.errors import CheckpointError
from stroke.tasks.classification.checkpoint import load_classifier


def test_a_bare_state_dict_names_the_weights_path_key(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 1, 3, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"is a bare state dict \(2 tensors") as err:
        read_checkpoint(path)
    assert (
        err.value.hint
        == f"to start a backbone from its weights: model.backbone.weights_path={path}"
    )


def test_a_safetensors_file_is_recognised(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointError, match="is a safetensors weights file") as err:
        read_checkpoint(path)
    assert "model.backbone.weights_path=" in err.value.hint


def test_another_lightning_project_s_checkpoint_is_named_so(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(1)},
                "hyper_parameters": {"lr": 0.1, "hidden": 64}}, path)  # fmt: skip
    with pytest.raises(
        CheckpointError, match=r"written by another Lightning project .*\['hidden', 'lr'\]"
    ):
        read_checkpoint(path)


def test_a_head_of_another_shape_names_the_layer_and_both_shapes(trained_run, tmp_path):
    content = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(
        k for k in content["state_dict"] if k.endswith("weight") and "head" in k or "fc" in k
    )
    content["state_dict"][name] = torch.zeros(7, *content["state_dict"][name].shape[1:])
    torch.save(content, tmp_path / "reshaped.ckpt")
    layer = name.removeprefix("net.")
    with pytest.raises(CheckpointError, match=rf"layer {layer} has shape \[7, "):
        load_classifier(tmp_path / "reshaped.ckpt")
