"""Leakage: a planted copy across splits is found by name; distinct slices are left alone."""

from __future__ import annotations

import csv
import io
import logging
import shutil
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATASETS, write_image
from PIL import Image

from stroke.data import CsvSource, DicomSource, FolderSource, Sample, StrokeDataModule
from stroke.data.images import ImageLoader
from stroke.data.leakage import (
    MAX_HASH_DISTANCE,
    MIN_CORRELATION,
    find_near_duplicates,
    hash_distance,
    image_signature,
    signatures,
)
from stroke.errors import DatasetError

CQ500_DIR = SHARED_DATASETS / "cq500_dicom_sample"


def plant_duplicate(phantom: Path, out: Path) -> tuple[Path, Path]:
    """Copy the phantom and add one slice again as a JPEG at 1.5x its size, as another patient."""
    shutil.copytree(phantom, out)
    original = out / "hemorrhagic" / "P0001_s01.png"
    copy = out / "hemorrhagic" / "P0999_s00.jpg"
    image = Image.open(original)
    image = image.resize((image.width * 3 // 2, image.height * 3 // 2), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    copy.write_bytes(buffer.getvalue())
    return original, copy


def split_by_patient(root: Path, csv_path: Path, test_patients: set[str], val_patients: set[str]):
    """A CSV source with a split column: the planted copy's patient goes to test."""
    rows = [["path", "label", "patient", "split"]]
    for image in sorted(root.glob("*/*.*")):
        if image.parent.name == "masks" or image.suffix not in (".png", ".jpg"):
            continue
        patient = image.name.split("_")[0]
        split = (
            "test" if patient in test_patients else "val" if patient in val_patients else "train"
        )
        rows.append([image.relative_to(root).as_posix(), image.parent.name, patient, split])
    with csv_path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return CsvSource(csv_path, patient_column="patient", split_column="split")


def test_planted_duplicate_across_splits_is_found_by_name(phantom_dir, tmp_path, caplog):
    root = tmp_path / "data"
    original, copy = plant_duplicate(phantom_dir, root)
    source = split_by_patient(root, root / "labels.csv", {"P0999", "P0003"}, {"P0004"})

    dm = StrokeDataModule(source, image_size=64, num_workers=0, leakage="warn")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert len(dm.near_duplicates) == 1
    pair = dm.near_duplicates[0]
    assert {pair.first.path, pair.second.path} == {original, copy}
    assert {pair.first.split, pair.second.split} == {"train", "test"}
    assert str(original) in caplog.text and str(copy) in caplog.text
    dm.write_leakage_report(tmp_path / "leakage.csv")
    rows = list(csv.DictReader((tmp_path / "leakage.csv").open()))
    assert {rows[0]["path_a"], rows[0]["path_b"]} == {original.as_posix(), copy.as_posix()}

    strict = StrokeDataModule(source, image_size=64, num_workers=0, leakage="error")
    with pytest.raises(
        DatasetError,
        match=r"(?s)1 near-duplicate image pair.*P0001_s01.png \[train\] ~ "
        r".*P0999_s00.jpg \[test\]",
    ):
        strict.setup("fit")
    # at the working size of the tiny test runs too
    small = StrokeDataModule(source, image_size=32, num_workers=0)
    small.setup("fit")
    assert len(small.near_duplicates) == 1


def test_distinct_slices_of_one_phantom_patient_are_not_duplicates(phantom_dir):
    # put each slice of every patient in a different split: the check compares them all
    samples = FolderSource(phantom_dir, patient_regex=r"^(P\d+)_").load()
    spread = [replace(s, split=("train", "val", "test")[int(s.path.stem[-1])]) for s in samples]
    for size in (32, 64, 128):
        bits, thumbs = signatures(spread, ImageLoader(size, 1), progress=False)
        assert find_near_duplicates(spread, bits, thumbs) == [], size


def test_thresholds_separate_copies_from_neighbouring_slices(phantom_dir, tmp_path):
    # the two criteria measured directly on adjacent slices of each patient
    loader = ImageLoader(64, 1)
    by_patient: dict[str, list[Path]] = {}
    for path in sorted(phantom_dir.glob("*/P*_s*.png")):
        by_patient.setdefault(path.name[:5], []).append(path)
    for paths in by_patient.values():
        for a, b in combinations(paths, 2):
            (bits_a, thumb_a), (bits_b, thumb_b) = (
                image_signature(loader(a)),
                image_signature(loader(b)),
            )
            distance = hash_distance(bits_a, bits_b)
            correlation = float(thumb_a @ thumb_b)
            assert distance > MAX_HASH_DISTANCE or correlation < MIN_CORRELATION, (a, b)


@pytest.mark.skipif(not CQ500_DIR.is_dir(), reason=f"{CQ500_DIR} not present")
def test_adjacent_real_ct_slices_are_not_duplicates():
    source = DicomSource(CQ500_DIR)
    samples = source.load()  # ordered along the scan axis
    spread = [replace(s, split=("train", "val", "test")[i % 3]) for i, s in enumerate(samples)]
    bits, thumbs = signatures(spread, ImageLoader(64, 1, source.read), progress=False)
    assert find_near_duplicates(spread, bits, thumbs) == []


def test_patient_in_two_splits_is_an_error_for_any_source(tmp_path):
    paths = [
        write_image(tmp_path / f"{i}.png", np.full((8, 8), 40 * i, np.uint8)) for i in range(4)
    ]

    class PreSplit:  # any source: the datamodule enforces it, not the source
        def load(self):
            return [
                Sample(p, "normal" if i % 2 else "stroke", "P1", split="train" if i < 2 else "test")
                for i, p in enumerate(paths)
            ]

    dm = StrokeDataModule(PreSplit(), num_workers=0)
    with pytest.raises(
        DatasetError, match=r"1 patient\(s\) have images in more than one split.*P1"
    ):
        dm.setup("fit")
