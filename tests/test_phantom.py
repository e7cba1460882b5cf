"""The synthetic head-CT phantom: reproducible, well-formed, safe on disk, and worth learning."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stroke.synth import PhantomConfig, generate_phantom

SMALL = PhantomConfig(n_patients=6, slices_per_patient=3, image_size=64, seed=0)
TINY = PhantomConfig(n_patients=3, slices_per_patient=1, image_size=32, seed=0)
HEADER = ["path", "label", "patient_id", "slice", "mask_path", "lesion_area"]


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory) -> Path:
    """The SMALL phantom, written once for the tests that only read it."""
    return generate_phantom(tmp_path_factory.mktemp("phantom"), SMALL, progress=False)


def read_rows(manifest: Path) -> list[dict[str, str]]:
    """The manifest's rows, checking its header on the way."""
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == HEADER
        return list(reader)


def load(root: Path, relative: str) -> np.ndarray:
    """An 8-bit PNG of the phantom as an array."""
    return np.asarray(Image.open(root / relative))


def dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow a boolean mask by `steps` pixels (4-connected)."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = (
            padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
            | padded[1:-1, :-2] | padded[1:-1, 2:]
        )  # fmt: skip
    return mask


def lesion_contrast(image: np.ndarray, mask: np.ndarray, statistic=np.mean) -> float:
    """Grey levels of the lesion minus those of the parenchyma in a 3-px ring around it.

    The ring skips CSF, bone and the pixels next to them, so it compares tissue with tissue.
    """
    parenchyma = ~dilate(~((image > 50) & (image < 240)), 1)
    ring = dilate(mask, 3) & ~mask & parenchyma
    assert ring.any(), "a lesion with no parenchyma around it"
    return float(statistic(image[mask].astype(float)) - statistic(image[ring].astype(float)))


def test_same_seed_gives_identical_files_and_another_seed_differs(small_manifest, tmp_path):
    first = small_manifest.parent
    second = generate_phantom(tmp_path / "again", SMALL, progress=False).parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative

    other = generate_phantom(tmp_path / "other", replace(SMALL, seed=1), progress=False).parent
    name = read_rows(small_manifest)[0]["path"]
    assert not np.array_equal(load(first, name), load(other, name))


def test_manifest_lists_every_slice_of_every_patient(small_manifest):
    root, rows = small_manifest.parent, read_rows(small_manifest)
    assert len(rows) == SMALL.n_patients * SMALL.slices_per_patient
    labels, slices = defaultdict(set), defaultdict(list)
    for row in rows:
        assert (root / row["path"]).is_file() and (root / row["mask_path"]).is_file()
        assert "\\" not in row["path"] and "\\" not in row["mask_path"]
        folder, name = row["path"].split("/")
        assert folder == row["label"] and row["mask_path"] == f"masks/{row['path']}"
        assert re.fullmatch(r"P\d+", row["patient_id"])
        # The data module groups slices by this regex on the file name, never by folder.
        assert re.match(r"^(P\d+)_", name).group(1) == row["patient_id"]
        labels[row["patient_id"]].add(row["label"])
        slices[row["patient_id"]].append(int(row["slice"]))
    assert all(len(found) == 1 for found in labels.values())
    assert all(sorted(s) == list(range(SMALL.slices_per_patient)) for s in slices.values())
    assert {label for found in labels.values() for label in found} == set(SMALL.classes)
    image = load(root, rows[0]["path"])
    assert image.dtype == np.uint8 and image.shape == (SMALL.image_size, SMALL.image_size)


def test_classes_stay_balanced_when_patients_do_not_divide_evenly(tmp_path):
    config = replace(TINY, n_patients=7)
    rows = read_rows(generate_phantom(tmp_path, config, progress=False))
    counts = Counter(row["label"] for row in rows)
    assert sorted(counts) == sorted(config.classes)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_masks_mark_lesions_denser_or_darker_than_their_surroundings(small_manifest):
    root = small_manifest.parent
    for row in read_rows(small_manifest):
        mask_image = load(root, row["mask_path"])
        assert set(np.unique(mask_image)) <= {0, 255}
        mask = mask_image > 0
        assert int(row["lesion_area"]) == mask.sum()
        if row["label"] == "normal":
            assert not mask.any(), row["path"]
            continue
        assert mask.any(), f"{row['path']}: a lesion patient's slice without lesion"
        contrast = lesion_contrast(load(root, row["path"]), mask, statistic=np.median)
        if row["label"] == "hemorrhagic":
            assert contrast > 0, f"{row['path']}: blood not denser than parenchyma"
        else:
            assert contrast < 0, f"{row['path']}: infarct not darker than parenchyma"


def test_lesions_range_from_large_and_obvious_to_small_and_faint(tmp_path):
    config = PhantomConfig(n_patients=24, slices_per_patient=4, image_size=64, seed=0)
    manifest = generate_phantom(tmp_path, config, progress=False)
    areas, contrasts = [], []
    for row in read_rows(manifest):
        if row["label"] != "normal":
            mask = load(tmp_path, row["mask_path"]) > 0
            areas.append(mask.sum())
            contrasts.append(abs(lesion_contrast(load(tmp_path, row["path"]), mask)))
    assert max(areas) >= 5 * min(areas)
    assert min(contrasts) < 20, "no faint lesion: the task would be trivial"
    assert max(contrasts) > 40, "no obvious lesion: the task would be hopeless"


def test_existing_phantom_with_same_config_is_reused_untouched(tmp_path):
    manifest = generate_phantom(tmp_path, TINY, progress=False)
    first_image = tmp_path / read_rows(manifest)[0]["path"]
    stamps = {p: p.stat().st_mtime_ns for p in (manifest, first_image)}
    assert generate_phantom(tmp_path, TINY, progress=False) == manifest
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_other_config_needs_overwrite_which_spares_user_files(tmp_path):
    generate_phantom(tmp_path, replace(TINY, n_patients=5), progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    other = replace(TINY, seed=1, image_size=40)
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))) as error:
        generate_phantom(tmp_path, other, progress=False)
    assert "overwrite=True" in str(error.value)

    manifest = generate_phantom(tmp_path, other, overwrite=True, progress=False)
    assert notes.read_text() == "mine"
    assert json.loads((tmp_path / "phantom.json").read_text())["seed"] == 1
    # Slices of the two patients the new config no longer has must be gone too.
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    rows = read_rows(manifest)
    assert files == {r["path"] for r in rows} | {r["mask_path"] for r in rows}
    assert load(tmp_path, rows[0]["path"]).shape == (40, 40)


def test_folder_holding_something_else_is_refused(tmp_path):
    (tmp_path / "scan.nii").write_bytes(b"not a phantom")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_phantom(tmp_path, TINY, progress=False)


def test_an_interrupted_write_is_started_again_but_a_user_file_stops_it(tmp_path, monkeypatch):
    import stroke.synth.phantom as phantom

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # slices written, then the manifest fails
        patch.setattr(phantom.csv, "writer", full_disk)
        with pytest.raises(OSError, match="No space left"):
            generate_phantom(tmp_path, TINY, progress=False)
    assert not (tmp_path / "phantom.json").exists() and not (tmp_path / "manifest.csv").exists()
    assert list(tmp_path.rglob("*.png"))  # the slices written before the failure
    manifest = generate_phantom(tmp_path, TINY, progress=False)  # no overwrite=True needed
    assert len(read_rows(manifest)) == 3
    (tmp_path / "phantom.json").unlink()
    (tmp_path / "normal" / "mine.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_phantom(tmp_path, TINY, progress=False)


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"n_patients": 2}, "n_patients"),
        ({"slices_per_patient": 0}, "slices_per_patient"),
        ({"image_size": 16}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"classes": ("normal", "normal", "ischemic")}, "classes"),
        ({"classes": ("normal", "tumour")}, "classes"),
    ],
)
def test_invalid_config_names_the_parameter(overrides, parameter):
    with pytest.raises(ValueError, match=rf"^{parameter}=") as error:
        PhantomConfig(**overrides)
    assert "allowed" in str(error.value)
