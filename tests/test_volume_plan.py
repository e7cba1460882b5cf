"""The volume plan (stroke/data/volume_*): fingerprint, nnU-Net's planning rules, the YAML a
user edits, resampling there and back, orientation to RAS, the CT intensity scheme."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged

from stroke.data.volume_fingerprint import VolumeFingerprint, fingerprint, load_ras_volume
from stroke.data.volume_plan import VolumePlan, plan_from_mapping, read_plan, write_plan
from stroke.data.volume_planner import activation_mb, network_topology, plan_volumes
from stroke.data.volume_transforms import intensity_transform, resampling_transforms
from stroke.errors import ConfigError, DatasetError


def save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def ellipsoid(shape, centre, radii):
    grid = np.indices(shape).astype(np.float64)
    d = sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3))
    return d <= 1.0


def fp_of(spacings, shapes, foreground=None):
    values = np.linspace(20, 80, 1000) if foreground is None else foreground
    return VolumeFingerprint(list(spacings), list(shapes), np.asarray(values, np.float32), {1: 10})


def test_fingerprint_measures_spacing_shape_and_the_foreground(tmp_path):
    image = np.full((20, 20, 10), 30.0, np.float32)
    labels = np.zeros_like(image, np.uint8)
    labels[5:10, 5:10, 2:6] = 1
    image[labels == 1] = 70.0
    affine = np.diag([0.9, 0.9, 5.0, 1.0])
    a = save(tmp_path / "a.nii.gz", image, affine)
    b = save(tmp_path / "a_label.nii.gz", labels, affine)
    fp = fingerprint([(a, b)])
    assert fp.shapes == [(20, 20, 10)]
    np.testing.assert_allclose(fp.spacings[0], (0.9, 0.9, 5.0), rtol=1e-5)
    stats = fp.intensity_statistics()
    assert stats["mean"] == pytest.approx(70.0) and stats["percentile_99_5"] == pytest.approx(70.0)
    assert fp.lesion_voxels == {1: 100}
    # a label volume on another grid is one error naming it
    other = save(tmp_path / "bad.nii.gz", labels[:, :, :8], affine)
    with pytest.raises(DatasetError, match="bad.nii.gz does not share the geometry"):
        fingerprint([(a, other)])
    (tmp_path / "broken.nii.gz").write_bytes(b"not a volume")
    with pytest.raises(DatasetError, match="cannot read volume .*broken.nii.gz"):
        fingerprint([(tmp_path / "broken.nii.gz", None)])


def test_plan_follows_nnunet_rules_for_anisotropic_ct():
    # thick-slice CT: 0.5 mm in plane, mostly 5 mm slices, a few thin-slice scans
    spacings = [(0.5, 0.5, 5.0)] * 8 + [(0.5, 0.5, 1.0)] * 2
    shapes = [(400, 400, 30)] * 8 + [(400, 400, 150)] * 2
    plan = plan_volumes(fp_of(spacings, shapes), memory_budget_mb=8000)
    # the coarse axis takes the 10th percentile of its spacings, not the median 5 mm
    assert plan.spacing[:2] == [0.5, 0.5] and plan.spacing[2] < 5.0
    # the fine axes are pooled before the coarse one; kernels along a still-coarse axis are 1
    assert plan.strides[0] == [1, 1, 1] and plan.strides[1][:2] == [2, 2]
    coarse_first = plan.spacing[2] > 2 * plan.spacing[0]
    assert not coarse_first or (plan.strides[1][2] == 1 and plan.kernel_sizes[0][2] == 1)
    for axis in range(3):
        assert plan.patch_size[axis] % math.prod(s[axis] for s in plan.strides) == 0
    assert plan.channels[0] == 32 and max(plan.channels) <= 320
    assert (
        plan.intensity["scheme"] == "ct" and plan.intensity["clip"][0] < plan.intensity["clip"][1]
    )
    # the batch fits the budget
    assert plan.batch_size * activation_mb(plan.patch_size, plan.strides, plan.channels) <= 8000


def test_a_smaller_memory_budget_gives_a_smaller_patch():
    fp = fp_of([(1.0, 1.0, 1.0)] * 4, [(160, 160, 160)] * 4)
    big = plan_volumes(fp, memory_budget_mb=20000)
    small = plan_volumes(fp, memory_budget_mb=500)
    assert math.prod(small.patch_size) < math.prod(big.patch_size)
    assert small.batch_size >= 2
    assert 2 * activation_mb(small.patch_size, small.strides, small.channels) <= 500
    with pytest.raises(ConfigError, match="memory_budget_mb"):
        plan_volumes(fp, memory_budget_mb=0)


def test_topology_stops_pooling_a_side_at_the_minimum_feature_map():
    strides, kernels = network_topology([64, 64, 16], [1.0, 1.0, 1.0])
    z = [s[2] for s in strides]
    assert math.prod(z) == 4  # 16 -> 8 -> 4: no side is pooled below 4 voxels
    assert len(strides) == len(kernels) == 5  # 64 -> 32 -> 16 -> 8 -> 4 in plane
    # once the in-plane voxels are over twice as coarse as z, they get 1-voxel kernels
    assert kernels[-1] == [1, 1, 3]


def test_plan_yaml_round_trip_overrides_and_errors(tmp_path):
    plan = plan_volumes(fp_of([(1.0, 1.0, 3.0)] * 3, [(64, 64, 20)] * 3), memory_budget_mb=2000)
    path = write_plan(plan, tmp_path / "plan.yaml")
    assert path.read_text().startswith("# A stroke volume plan")
    assert read_plan(path) == plan
    smaller = plan.override(patch_size=[32, 32, 16], strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    assert smaller.patch_size == [32, 32, 16] and len(smaller.kernel_sizes) == 3
    assert len(smaller.channels) == 3
    with pytest.raises(ConfigError, match=r"data.plan_overrides.patch_sise is not a plan key"):
        plan.override(patch_sise=[8, 8, 8])
    with pytest.raises(
        ConfigError, match=r"patch_size=\[30, 32, 16\]: side 0 \(30\) must be a multiple of 4"
    ):
        smaller.override(patch_size=[30, 32, 16])
    with pytest.raises(ConfigError, match="intensity"):
        plan.override(intensity={"scheme": "hu"})
    (tmp_path / "bad.yaml").write_text("spacing: [1, 1]\n")
    with pytest.raises(ConfigError, match="bad.yaml lacks plan key"):
        read_plan(tmp_path / "bad.yaml")
    values = plan.as_dict() | {"spacing": [1, -1, 3]}
    with pytest.raises(ConfigError, match=r"x.yaml: spacing=\[1, -1, 3\]"):
        plan_from_mapping(values, "x.yaml: ")
    with pytest.raises(ConfigError, match="is not a file"):
        read_plan(tmp_path / "missing.yaml")
    assert isinstance(plan, VolumePlan)


def test_resampling_there_and_back_keeps_the_lesion_volume(tmp_path):
    # a 13 mL haematoma (16 x 13 x 16 mm semi-axes) on 0.8 x 0.8 x 4 mm voxels
    shape = (80, 80, 24)
    labels = ellipsoid(shape, (40, 38, 12), (20, 16, 4)).astype(np.uint8)
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    path = save(tmp_path / "lesion.nii.gz", labels, affine)
    load = Compose([LoadImaged("label", image_only=True), EnsureChannelFirstd("label")])
    forward = resampling_transforms([1.5, 1.5, 1.5], ["label"], ["label"])
    pipeline = Compose([*load.transforms, *forward.transforms])
    data = pipeline({"label": str(path)})
    there = data["label"]
    assert tuple(float(s) for s in there.pixdim) == pytest.approx((1.5, 1.5, 1.5))
    true_ml = labels.sum() * 0.8 * 0.8 * 4.0 / 1000
    resampled_ml = float((there > 0.5).sum()) * 1.5**3 / 1000
    assert resampled_ml == pytest.approx(true_ml, rel=0.05)
    data["pred"] = there.clone().float()
    # as prediction does: the probabilities go back linearly, then the threshold
    back = Invertd("pred", pipeline, orig_keys="label", nearest_interp=False)(data)["pred"]
    assert tuple(back.shape[1:]) == shape
    np.testing.assert_allclose(np.asarray(back.affine), affine, atol=1e-4)
    back_ml = float((np.asarray(back[0]) > 0.5).sum()) * 0.8 * 0.8 * 4.0 / 1000
    assert back_ml == pytest.approx(true_ml, rel=0.05)


def test_orientation_brings_lps_and_ras_copies_to_the_same_voxels(tmp_path):
    rng = np.random.default_rng(1)
    ras = rng.normal(size=(8, 10, 6)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = (-8, -10, -9)
    # the same anatomy stored LPS: x and y reversed, the affine flipped to match
    lps_data = ras[::-1, ::-1, :].copy()
    flip = np.eye(4)
    flip[0, 0] = flip[1, 1] = -1
    flip[0, 3], flip[1, 3] = 7, 9  # voxel i of the stored copy is voxel 7 - i of the original
    lps_affine = affine @ flip
    a = save(tmp_path / "ras.nii.gz", ras, affine)
    b = save(tmp_path / "lps.nii.gz", lps_data, lps_affine)
    va, _, aa = load_ras_volume(a)
    vb, _, ab = load_ras_volume(b)
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_allclose(aa, ab, atol=1e-5)


def test_ct_intensity_clips_then_z_scores_with_the_plans_statistics():
    step = intensity_transform({"scheme": "ct", "clip": [0, 100], "mean": 50, "std": 25}, ["image"])
    image = torch.tensor([[[[-1000.0, 50.0, 100.0, 3000.0]]]])
    out = step({"image": image})["image"]
    np.testing.assert_allclose(np.asarray(out).ravel(), [-2.0, 0.0, 2.0, 2.0])
    window = intensity_transform({"scheme": "window", "level": 40, "width": 80}, ["image"])
    np.testing.assert_allclose(
        np.asarray(window({"image": image})["image"]).ravel(), [0.0, 0.625, 1.0, 1.0]
    )
