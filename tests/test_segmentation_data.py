"""Masks for segmentation: every layout, checked before training, letterboxed, cached, augmented."""

from __future__ import annotations

import csv
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import compose_train, write_image
from hydra.utils import instantiate

from stroke.data import CsvSource, FolderSource, NiftiSource, PresplitSource
from stroke.errors import ConfigError, DatasetError
from stroke.tasks.segmentation import LesionMasks, LesionSegmentationDataModule

PHANTOM_MASKS = {
    "lesion_classes": ["hemorrhage", "infarct"],
    "values": "binary",
    "from_label": {"hemorrhagic": "hemorrhage", "ischemic": "infarct"},
}
LABELLED = {"lesion_classes": ["hemorrhage", "infarct"], "values": {1: "hemorrhage", 2: "infarct"}}


def datamodule(
    source, masks=PHANTOM_MASKS, tmp_path=None, **kwargs
) -> LesionSegmentationDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "num_workers": 0, "leakage": "off", **kwargs}
    if tmp_path is not None:
        kwargs["cache_dir"] = tmp_path / "cache"
    dm = LesionSegmentationDataModule(source, masks=masks, **kwargs)
    dm.setup("fit")
    return dm


def scan_with_square(
    label_value: int, size=(40, 40), box=(10, 20, 12, 24), background: int = 40
) -> tuple:
    """A dark image with a bright square, and a mask of `label_value` on that square."""
    image = np.full(size, background, dtype=np.uint8)
    mask = np.zeros(size, dtype=np.uint8)
    top, bottom, left, right = box
    image[top:bottom, left:right] = 220
    mask[top:bottom, left:right] = label_value
    return image, mask


def labelled_folder(
    root, n_per_class=4, mask_values=(0, 1, 2), classes=("normal", "hemorrhagic", "ischemic")
):
    """`<root>/<class>/p<i>_<class>.png` with masks under `<root>/masks/` (values 0, 1, 2)."""
    for label, value in zip(classes, mask_values, strict=True):
        for i in range(n_per_class):
            image, mask = scan_with_square(value)
            write_image(root / label / f"p{i}_{label}.png", image)
            write_image(root / "masks" / label / f"p{i}_{label}.png", mask)
    return root


def test_phantom_masks_become_lesion_classes_from_the_image_label(phantom_dir, tmp_path):
    dm = datamodule(FolderSource(phantom_dir, r"^(P\d+)_", mask_dir="masks"), tmp_path=tmp_path)
    assert dm.lesion_classes == ["hemorrhage", "infarct"]
    assert dm.model_arguments()["lesion_classes"] == ["hemorrhage", "infarct"]
    for split in ("train", "val", "test"):
        dataset = dm.datasets[split]
        for index, sample in enumerate(dataset.samples):
            _, mask = dataset.image_and_mask(index)
            expected = {"normal": set(), "hemorrhagic": {1}, "ischemic": {2}}[sample.label]
            assert set(np.unique(mask)) - {0} == expected, sample.path
    image, mask, target = dm.datasets["train"][0]
    assert (
        image.shape == (1, 32, 32)
        and mask.shape == (32, 32)
        and mask.dtype.is_floating_point is False
    )
    assert dm.state_dict()["masks"]["values"] == "binary"


def test_labelled_masks_in_a_folder_csv_and_presplit_layout(tmp_path):
    folder = labelled_folder(tmp_path / "folder")
    for dm in (
        datamodule(FolderSource(folder, mask_dir="masks"), LABELLED, cache=False),
        datamodule(
            CsvSource(_csv_of(folder), path_column="path", mask_column="mask"),
            LABELLED,
            cache=False,
        ),
    ):
        values = {s.label: set(np.unique(m)) for s, m in _masks(dm)}
        assert values == {"normal": {0}, "hemorrhagic": {0, 1}, "ischemic": {0, 2}}
    presplit = tmp_path / "presplit"
    for split in ("train", "test"):
        labelled_folder(presplit / split)
        for mask in (presplit / split / "masks").rglob("*.png"):  # masks/<split>/<class>/...
            target = presplit / "masks" / split / mask.relative_to(presplit / split / "masks")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(mask, target)
    dm = datamodule(PresplitSource(presplit, mask_dir="masks"), LABELLED, cache=False)
    assert {s.split for s in dm.samples} == {"train", "val", "test"}
    assert all(s.mask_path.is_file() for s in dm.samples)


def _csv_of(folder):
    path = folder / "labels.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "mask"])
        for image in sorted(folder.glob("*/*.png")):
            if "masks" not in image.parts:
                relative = image.relative_to(folder).as_posix()
                writer.writerow([relative, image.parent.name, f"masks/{relative}"])
    return path


def _masks(dm):
    for split in ("train", "val", "test"):
        dataset = dm.datasets[split]
        for index, sample in enumerate(dataset.samples):
            yield sample, dataset.image_and_mask(index)[1]


def test_nifti_label_volumes_keep_their_classes(tmp_path):
    for i, label in enumerate(["normal", "stroke"] * 3):
        volume = np.full((16, 16, 2), -1000, dtype=np.int16)
        volume[2:-2, 2:-2] = 30
        labels = np.zeros(volume.shape, dtype=np.uint8)
        if label == "stroke":
            labels[4:7, 4:7, :] = 1  # hemorrhage
            labels[9:12, 9:12, :] = 2  # infarct
        for folder, data in (("", volume), ("masks", labels)):
            path = tmp_path / folder / label / f"p{i}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 5.0, 1])), path)
    dm = datamodule(NiftiSource(tmp_path), LABELLED, image_size=32, cache=False)
    stroke = [m for s, m in _masks(dm) if s.label == "stroke"]
    assert all(set(np.unique(m)) == {0, 1, 2} for m in stroke)
    from stroke.tasks.segmentation.units import slice_geometry

    geometry = slice_geometry(dm.samples[0])
    assert geometry.pixel_mm == (0.5, 0.5) and geometry.slice_mm == 5.0


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (
            "size",
            r"mask .*p0_hemorrhagic.png is 20x20 pixels but its image .*p0_hemorrhagic.png "
            r"is 40x40",
        ),
        (
            "value",
            r"mask .*p0_hemorrhagic.png of image .*p0_hemorrhagic.png holds values \[7\] outside",
        ),
        (
            "missing",
            r"image .*p0_hemorrhagic.png has no mask: "
            r".*masks/hemorrhagic/p0_hemorrhagic.png does not exist",
        ),
    ],
)
@pytest.mark.parametrize("cache", [True, False])
def test_a_bad_mask_is_an_error_naming_image_and_mask_before_training(
    tmp_path, break_it, expected, cache
):
    folder = labelled_folder(tmp_path / "data")
    mask_path = folder / "masks" / "hemorrhagic" / "p0_hemorrhagic.png"
    if break_it == "size":
        write_image(mask_path, np.zeros((20, 20), np.uint8))
    elif break_it == "value":
        write_image(mask_path, np.full((40, 40), 7, np.uint8))
    else:
        mask_path.unlink()
    with pytest.raises(DatasetError, match=expected):
        datamodule(FolderSource(folder, mask_dir="masks"), LABELLED, tmp_path=tmp_path, cache=cache)


def test_lesion_pixels_on_an_image_whose_label_has_no_lesion_class(tmp_path):
    folder = labelled_folder(tmp_path / "data", mask_values=(255, 255, 255))
    with pytest.raises(
        DatasetError, match=r"mask .*normal.* has lesion pixels, but the image's label 'normal'"
    ):
        datamodule(FolderSource(folder, mask_dir="masks"), PHANTOM_MASKS, cache=False)


def test_mask_mapping_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.masks.from_label"):
        LesionMasks(("hemorrhage", "infarct"), "binary")
    with pytest.raises(ConfigError, match="data.masks.values maps 2 to 'edema'"):
        LesionMasks(("hemorrhage",), {1: "hemorrhage", 2: "edema"})
    with pytest.raises(ConfigError, match="data.masks has unknown keys"):
        LesionMasks.from_config({"lesion_classes": ["a"], "value": "binary"})


def test_a_mask_is_letterboxed_with_its_image_and_keeps_its_labels(tmp_path):
    image, mask = scan_with_square(2, size=(30, 60), box=(10, 20, 20, 40))
    write_image(tmp_path / "data" / "stroke" / "a.png", image)
    write_image(tmp_path / "data" / "masks" / "stroke" / "a.png", mask)
    write_image(tmp_path / "data" / "normal" / "b.png", image)
    write_image(tmp_path / "data" / "masks" / "normal" / "b.png", np.zeros_like(mask))
    source = FolderSource(tmp_path / "data", mask_dir="masks")
    dm = LesionSegmentationDataModule(source, masks=LABELLED, image_size=32, cache=False)
    sample = next(s for s in source.load() if s.label == "stroke")
    stacked = dm.loader(sample)
    boxed_image, boxed_mask = stacked[..., 0], stacked[..., 1]
    assert set(np.unique(boxed_mask)) == {0, 2}  # nearest neighbour invents no label
    assert boxed_mask[:8].max() == 0  # the 30x60 image fills rows 8..23: padding above
    # mask and image stay aligned (the image's edge pixels blend with their neighbours)
    assert np.mean(boxed_image[boxed_mask == 2] >= 150) > 0.9
    native = dm.preprocessing.restore_size(boxed_mask, 30, 60, nearest=True)
    # back at the image's size: right but for the boundary pixels the 0.53x round trip blurs
    assert native.shape == (30, 60) and (native == mask).mean() > 0.93


def test_augmentation_moves_image_and_mask_together(tmp_path):
    """The heavy policy: after any draw the mask still covers the bright square and nothing else.

    On a black background (the air a rotation fills in), every intensity transform of the
    policy (brightness, contrast, CLAHE, equalisation, noise, blur) keeps the square the
    brightest part of the image, so where the image is bright is where the mask must be.
    """
    cfg = compose_train(["augmentation=heavy"], tmp_path)
    transform = instantiate(cfg.augmentation)
    image, mask = scan_with_square(1, size=(48, 48), box=(8, 24, 14, 30), background=0)
    moved_somewhere = 0
    for seed in range(40):
        np.random.seed(seed)
        import random

        random.seed(seed)
        out = transform(image=image[:, :, None].copy(), mask=mask.copy())
        moved_image, moved_mask = out["image"][..., 0].astype(int), out["mask"]
        assert moved_mask.dtype == mask.dtype and set(np.unique(moved_mask)) <= {0, 1}
        lesion = moved_mask == 1
        moved_somewhere += not np.array_equal(moved_mask, mask)
        if lesion.sum() < 20:  # the square was moved (mostly) out of the frame
            continue
        # intensity changes the image only: bright under the mask, dark around it
        inside, outside = moved_image[lesion], moved_image[~lesion]
        assert np.median(inside) > np.median(outside) + 80, seed
        bright = moved_image > (np.median(inside) + np.median(outside)) / 2
        agreement = (bright == lesion).mean()
        assert agreement > 0.97, (seed, agreement)
    assert moved_somewhere > 20  # the policy did move things


def test_segmentation_cache_is_its_own_and_follows_its_mask_files(tmp_path):
    folder = labelled_folder(tmp_path / "data")
    source = FolderSource(folder, mask_dir="masks")
    classification = instantiate(
        {"_target_": "stroke.data.StrokeDataModule", "source": FolderSource(folder)},
        image_size=32,
        num_workers=0,
        leakage="off",
        cache_dir=tmp_path / "cache",
    )
    classification.setup("fit")
    first = datamodule(source, LABELLED, tmp_path=tmp_path)
    assert first.image_cache.key != classification.image_cache.key
    assert classification.image_cache.path.is_dir()  # not pruned as superseded
    mask_path = folder / "masks" / "ischemic" / "p0_ischemic.png"
    write_image(mask_path, np.zeros((40, 40), np.uint8))
    stat = mask_path.stat()
    os.utime(mask_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = datamodule(FolderSource(folder, mask_dir="masks"), LABELLED, tmp_path=tmp_path)
    assert second.image_cache.key != first.image_cache.key and second.image_cache.built
