"""NIfTI volumes: axial slices as samples, oriented like DICOM, masks kept, bad shapes named."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest

from stroke.data import NiftiSource, StrokeDataModule
from stroke.data.nifti import read_axial_slice
from stroke.errors import DatasetError


def write_volume(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def ct_volume(n_slices=4, size=16, lesion_hu=60.0, seed=0):
    """HU volume (x, y, z) in RAS order: brain at 30 HU, air around, a lesion on each slice."""
    rng = np.random.default_rng(seed)
    vol = np.full((size, size, n_slices), -1000.0, dtype=np.float32)
    vol[2:-2, 2:-2, :] = 30.0 + rng.normal(0, 2, (size - 4, size - 4, n_slices))
    vol[5:8, 5:8, :] = lesion_hu
    return vol.astype(np.int16)


def test_every_axial_slice_is_a_sample(tmp_path):
    write_volume(tmp_path / "normal" / "sub-01.nii.gz", ct_volume(5))
    write_volume(tmp_path / "stroke" / "sub-02.nii", ct_volume(3))
    samples = NiftiSource(tmp_path).load()
    assert [(s.label, s.patient_id, s.slice_index) for s in samples] == [
        *(("normal", "sub-01", k) for k in range(5)),
        *(("stroke", "sub-02", k) for k in range(3)),
    ]
    assert len(NiftiSource(tmp_path, slice_step=2).load()) == 3 + 2


def test_slices_are_windowed_like_dicom(tmp_path):
    vol = np.zeros((4, 4, 2), dtype=np.int16)
    vol[..., 0], vol[..., 1] = 0, 80  # HU: black and white in the brain window (W80/L40)
    write_volume(tmp_path / "normal" / "v.nii.gz", vol)
    source = NiftiSource(tmp_path, window="brain")
    first, second = source.load()
    assert source.read(first, 1).shape == (4, 4, 1)
    assert source.read(first, 1).max() == 0 and source.read(second, 1).min() == 255
    stacked = NiftiSource(tmp_path, multi_window=["brain", "subdural", "bone"]).read(second, 3)
    assert stacked.shape == (4, 4, 3) and len({stacked[..., c].tobytes() for c in range(3)}) == 3


@pytest.mark.parametrize(
    "flip_x, flip_y, flip_z", [(1, 1, 1), (-1, 1, 1), (1, -1, -1), (-1, -1, -1)]
)
def test_slices_are_shown_anterior_up_patient_right_on_the_left(tmp_path, flip_x, flip_y, flip_z):
    # a marker at the right-anterior corner of the most superior slice, stored with the
    # voxel axes flipped as scanners do; the view must not depend on the storage order
    ras = np.zeros((6, 5, 3), dtype=np.int16)
    ras[5, 4, 2] = 100  # x = right-most, y = front-most, z = top
    data = ras[::flip_x, ::flip_y, ::flip_z]
    affine = np.diag([flip_x, flip_y, flip_z, 1]).astype(float)
    path = write_volume(tmp_path / "v.nii.gz", data, affine)
    top = read_axial_slice(path, 2)
    assert top.shape == (5, 6)  # rows: anterior-posterior, columns: right-left
    assert np.argwhere(top == 100).tolist() == [[0, 0]]  # anterior row, patient-right column
    assert read_axial_slice(path, 0).max() == 0


def test_axes_stored_in_another_order_are_handled(tmp_path):
    ras = np.zeros((6, 5, 3), dtype=np.int16)
    ras[5, 4, 2] = 100
    # voxel axes (z, y, x): the affine maps voxel axis 0 to z and axis 2 to x
    affine = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    path = write_volume(tmp_path / "v.nii.gz", ras.transpose(2, 1, 0), affine)
    assert np.argwhere(read_axial_slice(path, 2) == 100).tolist() == [[0, 0]]


def test_masks_are_kept_with_their_slices(tmp_path):
    vol = ct_volume(3)
    mask = np.zeros(vol.shape, dtype=np.uint8)
    mask[5:8, 5:8, 1] = 1
    write_volume(tmp_path / "stroke" / "p1.nii.gz", vol)
    write_volume(tmp_path / "masks" / "stroke" / "p1.nii.gz", mask)
    write_volume(tmp_path / "normal" / "p2.nii.gz", ct_volume(3))
    source = NiftiSource(tmp_path)
    samples = source.load()
    assert len(samples) == 6  # the mask folder holds no samples of its own
    with_mask = [s for s in samples if s.mask_path is not None]
    assert [s.slice_index for s in with_mask] == [0, 1, 2]
    assert [int(source.read_mask(s).sum()) for s in with_mask] == [0, 9, 0]
    assert source.read_mask(next(s for s in samples if s.label == "normal")) is None


def test_datamodule_trains_on_slices_and_records_them(tmp_path):
    for i in range(6):
        write_volume(
            tmp_path / "data" / ("stroke" if i % 2 else "normal") / f"p{i}.nii.gz",
            ct_volume(3, lesion_hu=60.0 if i % 2 else 30.0, seed=i),
        )
    dm = StrokeDataModule(
        NiftiSource(tmp_path / "data"),
        image_size=16,
        num_workers=0,
        seed=1,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (1, 16, 16)
    dm.write_splits(tmp_path / "splits.csv")
    header = (tmp_path / "splits.csv").read_text().splitlines()[0]
    assert header == "path,label,patient_id,split,slice_index"


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4, 2)])
def test_volume_of_wrong_dimensionality_is_named(tmp_path, shape):
    write_volume(tmp_path / "normal" / "bad.nii.gz", np.zeros(shape, dtype=np.int16))
    expected = rf"bad.nii.gz has shape {re.escape(str(shape))} \({len(shape)}-D\); expected a 3-D"
    with pytest.raises(DatasetError, match=expected):
        NiftiSource(tmp_path).load()


def test_single_volume_4d_is_accepted(tmp_path):
    write_volume(tmp_path / "normal" / "v.nii.gz", np.zeros((4, 4, 3, 1), dtype=np.int16))
    assert len(NiftiSource(tmp_path).load()) == 3


def test_folder_without_volumes_is_an_error(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "scan.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="holds no .nii or .nii.gz volume"):
        NiftiSource(tmp_path).load()


def test_mask_of_another_shape_is_an_error(tmp_path):
    write_volume(tmp_path / "stroke" / "p1.nii.gz", ct_volume(3))
    write_volume(tmp_path / "masks" / "stroke" / "p1.nii.gz", np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(DatasetError, match="must match its volume voxel for voxel"):
        NiftiSource(tmp_path).load()


def test_csv_naming_unknown_volumes_is_an_error(tmp_path):
    write_volume(tmp_path / "vols" / "a.nii.gz", ct_volume(2))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.nii.gz,stroke\nb.nii.gz,normal\n")
    with pytest.raises(DatasetError, match=r"1 volume path\(s\) .* match no image .*b.nii.gz"):
        NiftiSource(tmp_path / "vols", labels_csv=labels).load()
