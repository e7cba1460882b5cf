"""Data sources, splits and image decoding: what a user bringing their own data relies on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders, write_image
from PIL import Image

from stroke.data import CsvSource, FolderSource, PresplitSource, StrokeDataModule
from stroke.data.images import ImageLoader, read_image
from stroke.errors import DatasetError


def setup_dm(source, **kwargs) -> StrokeDataModule:
    dm = StrokeDataModule(source, image_size=kwargs.pop("image_size", 16), num_workers=0, **kwargs)
    dm.setup("fit")
    return dm


# -- splits ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_patient_aware_split_never_shares_a_patient(tmp_path, seed):
    # 12 patients x 4 images per class: an image-level split would scatter every patient
    root = make_class_folders(tmp_path, {"normal": 48, "stroke": 48}, patients=12)
    source = FolderSource(root, patient_regex=r"^(p\d+)_")
    dm = setup_dm(source, seed=seed, val_fraction=0.2, test_fraction=0.2)
    splits_of: dict[tuple[str, str], set[str]] = {}
    for s in dm.samples:
        splits_of.setdefault((s.label, s.patient_id), set()).add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())
    # stratified: every split holds every class
    for split in ("train", "val", "test"):
        assert set(s.label for s in dm.split_samples(split)) == {"normal", "stroke"}


def test_split_is_seeded_and_recorded(tmp_path):
    root = make_class_folders(tmp_path / "d", {"normal": 20, "stroke": 20})
    first = setup_dm(FolderSource(root), seed=7)
    second = setup_dm(FolderSource(root), seed=7)
    other = setup_dm(FolderSource(root), seed=8)
    assert [s.split for s in first.samples] == [s.split for s in second.samples]
    assert [s.split for s in first.samples] != [s.split for s in other.samples]
    first.write_splits(tmp_path / "run" / "splits.csv")
    rows = list(csv.DictReader((tmp_path / "run" / "splits.csv").open()))
    assert len(rows) == 40
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert rows[0].keys() == {"path", "label", "patient_id", "split"}


def test_negative_class_gets_index_zero(tmp_path):
    root = make_class_folders(tmp_path, {"hemorrhagic": 6, "normal": 6, "ischemic": 6})
    dm = setup_dm(FolderSource(root))
    assert dm.class_names == ["normal", "hemorrhagic", "ischemic"]


def test_class_map_merges_and_drops(tmp_path):
    root = make_class_folders(tmp_path, {"hemorrhagic": 6, "normal": 6, "ischemic": 6})
    merged = setup_dm(FolderSource(root), class_map={"hemorrhagic": "stroke", "ischemic": "stroke"})
    assert merged.class_names == ["normal", "stroke"]
    assert sum(merged.class_counts(s)[1] for s in ("train", "val", "test")) == 12
    dropped = setup_dm(FolderSource(root), class_map={"normal": None})
    assert dropped.class_names == ["hemorrhagic", "ischemic"]
    assert len(dropped.samples) == 12


# -- sources -----------------------------------------------------------------------------
def test_presplit_folders_in_any_case(tmp_path):
    make_class_folders(tmp_path / "Train", {"normal": 6, "stroke": 6})
    make_class_folders(tmp_path / "VALID", {"normal": 2, "stroke": 2})
    make_class_folders(tmp_path / "Test", {"normal": 3, "stroke": 3})
    dm = setup_dm(PresplitSource(tmp_path))
    assert [len(dm.split_samples(s)) for s in ("train", "val", "test")] == [12, 4, 6]


def test_presplit_without_val_carves_it_from_train(tmp_path):
    make_class_folders(tmp_path / "train", {"normal": 10, "stroke": 10})
    make_class_folders(tmp_path / "test", {"normal": 3, "stroke": 3})
    dm = setup_dm(PresplitSource(tmp_path), val_fraction=0.2)
    assert len(dm.split_samples("test")) == 6  # the given test split is untouched
    assert len(dm.split_samples("val")) == 4
    assert len(dm.split_samples("train")) == 16


def test_csv_by_path_with_patient_column(tmp_path):
    make_class_folders(tmp_path / "imgs", {"normal": 4, "stroke": 4})
    rows = [
        (p.relative_to(tmp_path).as_posix(), p.parent.name, p.name[:4])
        for p in sorted((tmp_path / "imgs").rglob("*.png"))
    ]
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("file", "diagnosis", "pid"), *rows])
    source = CsvSource(
        tmp_path / "labels.csv", path_column="file", label_column="diagnosis", patient_column="pid"
    )
    dm = setup_dm(source)
    assert len(dm.samples) == 8
    assert {s.patient_id for s in dm.samples} == {r[2] for r in rows}


def test_csv_by_id_template_tolerates_header_whitespace(tmp_path):
    for i in range(10):
        write_image(tmp_path / "images" / f"{i:03d}.png", np.full((20, 20), i * 20, np.uint8))
    lines = ["id, hemorrhage"] + [f"{i}, {i % 2}" for i in range(10)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    source = CsvSource(
        tmp_path / "labels.csv",
        path_column=None,
        id_column="id",
        path_template="images/{id:03d}.png",
        label_column="hemorrhage",
    )
    dm = setup_dm(source, class_map={"0": "none", "1": "hemorrhage"})
    assert dm.class_names == ["none", "hemorrhage"]
    assert sorted(s.path.name for s in dm.samples)[:2] == ["000.png", "001.png"]


# -- bad input: every error names the path or key ------------------------------------------
def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match="does-not-exist"):
        setup_dm(FolderSource(tmp_path / "does-not-exist"))


def test_empty_class_folder_is_named(tmp_path):
    make_class_folders(tmp_path, {"normal": 4, "stroke": 4})
    (tmp_path / "ischemic").mkdir()
    with pytest.raises(DatasetError, match=r"ischemic.*holds no images"):
        setup_dm(FolderSource(tmp_path))


def test_single_class_is_refused(tmp_path):
    make_class_folders(tmp_path, {"normal": 4})
    with pytest.raises(DatasetError, match=r"single class \['normal'\]"):
        setup_dm(FolderSource(tmp_path))


def test_zero_byte_image_is_named(tmp_path):
    make_class_folders(tmp_path, {"normal": 4, "stroke": 4})
    (tmp_path / "stroke" / "empty.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"empty\.png"):
        setup_dm(FolderSource(tmp_path))


def test_corrupt_image_is_named_when_read(tmp_path):
    bad = tmp_path / "stroke" / "corrupt.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(DatasetError, match=r"cannot decode image .*corrupt\.png"):
        read_image(bad, in_chans=1)


def test_truncated_image_is_named_when_read(tmp_path):
    good = write_image(
        tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)
    )
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"truncated\.png"):
        read_image(truncated, in_chans=1)


def test_csv_row_naming_a_missing_file(tmp_path):
    make_class_folders(tmp_path / "imgs", {"normal": 2, "stroke": 2})
    (tmp_path / "labels.csv").write_text(
        "path,label\nimgs/normal/p000_normal_000.png,normal\nimgs/stroke/nope.png,stroke\n"
    )
    with pytest.raises(DatasetError, match=r"line 3: .*nope\.png"):
        CsvSource(tmp_path / "labels.csv").load()


def test_csv_unknown_column_lists_the_columns(tmp_path):
    (tmp_path / "labels.csv").write_text("path,diagnosis\na.png,normal\n")
    with pytest.raises(DatasetError, match=r"label_column='label'.*\['path', 'diagnosis'\]"):
        CsvSource(tmp_path / "labels.csv").load()


def test_patient_regex_that_does_not_match_names_the_file(tmp_path):
    make_class_folders(tmp_path, {"normal": 2, "stroke": 2})
    with pytest.raises(DatasetError, match=r"patient_regex .*p000_normal_000\.png"):
        FolderSource(tmp_path, patient_regex=r"^(P\d+)-").load()


# -- image modes -------------------------------------------------------------------------
def _images_of_every_mode(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (30, 50), np.uint8)
    paths = {
        "L": tmp_path / "gray.png",
        "RGB": tmp_path / "rgb.jpg",
        "RGBA": tmp_path / "rgba.png",
        "P": tmp_path / "palette.png",
        "I;16": tmp_path / "sixteen.png",
    }
    Image.fromarray(gray).save(paths["L"])
    Image.fromarray(np.stack([gray] * 3, axis=2)).save(paths["RGB"])
    Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)])).save(paths["RGBA"])
    Image.fromarray(gray).convert("P").save(paths["P"])
    Image.fromarray(gray.astype(np.uint16) * 16 + 1000).save(paths["I;16"])
    return paths


@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_image_mode_reaches_the_model_shape(tmp_path, in_chans):
    loader = ImageLoader(image_size=40, in_chans=in_chans)
    for mode, path in _images_of_every_mode(tmp_path).items():
        array = loader(path)
        assert array.shape == (40, 40, in_chans), mode
        assert array.dtype == np.uint8
        # the 50-px-wide image is letterboxed, not stretched: top rows are padding
        assert array[0].max() == 0, mode
        assert array[20].max() > 0, mode


def test_sixteen_bit_uses_its_full_range(tmp_path):
    path = _images_of_every_mode(tmp_path)["I;16"]
    array = read_image(path, in_chans=1)
    assert array.min() == 0 and array.max() == 255
