"""Every shipped config composes, and the objects it names can be built."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_train
from hydra.utils import instantiate

from stroke.build import build_datamodule, build_model
from stroke.config import source_checkout
from stroke.data.batch_augment import BatchAugmentation
from stroke.tasks.segmentation_3d.transforms import VolumeAugmentation

CONF = source_checkout() / "conf"


def names(group: str) -> list[str]:
    """The options of a config group (files starting with `_` are bases, not options)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("experiment", names("experiment"))
def test_every_experiment_composes_and_builds(experiment, phantom_dir, request, tmp_path):
    # each preset on the phantom of its layout: the PNG slices, the RSNA-style series, or
    # whole volumes
    layout = compose_train([f"experiment={experiment}"], tmp_path).data.source._target_
    if "Rsna" in layout:
        root = request.getfixturevalue("subtype_phantom")
    elif "VolumeSource" in layout:
        root = request.getfixturevalue("volume_root")
    else:
        root = phantom_dir
    overrides = [f"experiment={experiment}", f"data.root={root}"]
    if experiment == "head_ct_hemorrhage_cv":  # from scratch here; test_pretrain_preset.py
        overrides.append("model.backbone.weights_path=null")  # starts it from the phantom's
    cfg = compose_train(overrides, tmp_path)
    assert cfg.task_name == experiment
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule)
    assert model.hparams.num_classes == datamodule.num_classes
    model.configure_optimizers()


def test_experiment_class_maps_give_the_intended_tasks(phantom_dir, tmp_path):
    expected = {
        "stroke_vs_normal": ["normal", "stroke"],
        "stroke_type": ["ischemic", "hemorrhagic"],
        "head_ct_hemorrhage": ["none", "hemorrhage"],
        "head_ct_hemorrhage_cv": ["none", "hemorrhage"],
        "brain_mri_multiclass": ["normal", "hemorrhagic", "ischemic"],
    }
    for experiment, classes in expected.items():
        cfg = compose_train([f"experiment={experiment}", f"data.root={phantom_dir}"], tmp_path)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        assert datamodule.class_names == classes, experiment


@pytest.mark.parametrize(
    "group",
    [
        "model",
        "trainer",
        "augmentation",
        "data",
        "optimizer",
        "scheduler",
        "logger",
        "callbacks",
        "debug",
        "weight_averaging",
    ],
)
def test_every_option_of_a_group_composes(group, tmp_path):
    for option in names(group):
        overrides = [f"{group}={option}"]
        if group == "model" and option == "timm":
            overrides.append("model.backbone.name=convnext_tiny")
        if group == "data":
            overrides.append("data.root=/anywhere")
        cfg = compose_train(overrides, tmp_path)
        assert cfg is not None


@pytest.mark.parametrize("option", names("augmentation"))
def test_augmentation_pipelines_run_on_uint8_images(option, tmp_path):
    import numpy as np

    cfg = compose_train([f"augmentation={option}"], tmp_path)
    pipeline = instantiate(cfg.augmentation)
    if isinstance(pipeline, BatchAugmentation):  # whole normalised batches, on the device
        batch = torch.zeros(2, 3, 48, 48)
        assert pipeline(batch, [0.5] * 3, [0.25] * 3).shape == batch.shape
        return
    if isinstance(pipeline, VolumeAugmentation):  # patches of whole scans (3-D tasks)
        from monai.transforms import Compose

        label = torch.zeros(1, 24, 20, 12)
        label[0, 5:10, 5:10, 3:6] = 1
        scan = {"image": torch.randn(1, 24, 20, 12), "label": label}
        patches = Compose(pipeline.transforms([16, 16, 8]))(scan)
        assert len(patches) == pipeline.patches_per_volume
        assert all(p["image"].shape == (1, 16, 16, 8) for p in patches)
        return
    for channels in (1, 3):
        image = np.random.default_rng(0).integers(0, 255, (48, 48, channels), np.uint8)
        out = pipeline(image=image)["image"]
        assert out.shape[:2] == (48, 48) and out.dtype == np.uint8


@pytest.mark.parametrize("group", ["model", "data", "trainer"])
def test_every_option_names_the_class_it_builds_in_its_own_file(group):
    """One hop from a YAML file to its class: `_target_` is in the file, not in a parent."""
    import yaml

    for option in names(group):
        node = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
        assert "_target_" in node, f"conf/{group}/{option}.yaml names no _target_"
