"""Shared fixtures: a tiny phantom, tiny image folders, and configs composed like the CLI does."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

from stroke.config import CONFIG_MODULE
from stroke.synth import PhantomConfig, generate_phantom

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

#: Overrides that shrink any run to seconds on 2 CPU cores.
TINY = [
    "data.image_size=32",
    "data.num_workers=0",
    "data.batch_size=8",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
]


@pytest.fixture(scope="session", autouse=True)
def _image_cache_in_tmp(tmp_path_factory):
    """Decoded-image caches of test runs go to a temporary folder, not the project's .cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STROKE_CACHE_DIR", str(tmp_path_factory.mktemp("stroke_cache")))
        yield


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A tiny phantom: 9 patients x 3 slices at 48 px, three classes."""
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom(
        root,
        PhantomConfig(n_patients=9, slices_per_patient=3, image_size=48, seed=3),
        progress=False,
    )
    return root


def compose_config(name: str, overrides: list[str], hydra_config: bool = False) -> DictConfig:
    """The config `stroke-<name> <overrides>` composes (from the packaged `stroke.conf`)."""
    GlobalHydra.instance().clear()
    with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
        return compose(name, overrides=overrides, return_hydra_config=hydra_config)


def compose_train(overrides: list[str], run_dir: Path) -> DictConfig:
    """The config `stroke-train <overrides>` would run with, its run directory set to `run_dir`."""
    cfg = compose_config("train", overrides, hydra_config=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def run_module(
    module: str, *args: object, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as a user runs the console script; output captured as text.

    `env` adds variables to this process's environment.
    """
    cmd = [sys.executable, "-m", module, *map(str, args)]
    environment = {**os.environ, **env} if env else None
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=environment)


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save an array as an image file, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_class_folders(
    root: Path, classes: dict[str, int], size: int = 24, patients: int | None = None
) -> Path:
    """Folder-per-class images `<root>/<class>/p<patient>_<i>.png`, bright square for non-normal."""
    rng = np.random.default_rng(0)
    for label, count in classes.items():
        for i in range(count):
            image = rng.integers(0, 60, (size, size), dtype=np.uint8)
            if label != "normal":
                image[4:12, 4:12] = 220
            patient = i % patients if patients else i
            write_image(root / label / f"p{patient:03d}_{label}_{i:03d}.png", image)
    return root


@pytest.fixture(scope="session")
def trained_run(phantom_dir, tmp_path_factory) -> Path:
    """A finished `stroke-train` run directory (CLI, tiny phantom, 2 epochs, in_chans 1)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run_module(
        "stroke.cli.train",
        *TINY,
        f"data.root={phantom_dir}",
        "trainer.max_epochs=2",
        "evaluation.n_boot=50",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def dicom_run(tmp_path_factory) -> Path:
    """A finished binary (normal, hemorrhage) run trained on synthetic DICOM slices, 32 px."""
    from dicom_factory import synthetic_ct_tree

    from stroke.cli.train import train

    base = tmp_path_factory.mktemp("dicom_run")
    root = synthetic_ct_tree(base / "dicom", patients=8, slices=3)
    run_dir = base / "run"
    overrides = [
        *TINY,
        "data=dicom",
        f"data.root={root}",
        "model=cnn_small",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "evaluation.n_boot=20",
    ]
    train(compose_train(overrides, run_dir))
    return run_dir


#: A multi-label model of the subtype phantom's slices (5 subtypes + any), shrunk to seconds:
#: one slice a sample (stroke-serve refuses context models), cnn_small, 32 px.
SUBTYPES = [
    "experiment=ich_subtypes",
    "data.context_slices=0",
    "model.backbone.name=cnn_small",
    "data.leakage=off",
    "evaluation.n_boot=20",
]


@pytest.fixture(scope="session")
def subtype_phantom(tmp_path_factory) -> Path:
    """`stroke-synth layout=rsna`: six patients' DICOM series with haemorrhage subtypes, 32 px."""
    out = tmp_path_factory.mktemp("subtypes") / "rsna"
    result = run_module(
        "stroke.cli.synth", "layout=rsna", "n_patients=6", "image_size=32", f"out_dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def train_subtypes(root: Path, run_dir: Path, *overrides: str) -> Path:
    """A finished multi-label `stroke-train` run on the subtype phantom (the CLI, ~20 s)."""
    result = run_module(
        "stroke.cli.train", *TINY, *SUBTYPES, f"data.root={root}", f"hydra.run.dir={run_dir}",
        *overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def subtype_run(subtype_phantom, tmp_path_factory) -> Path:
    """A multi-label run directory (checkpoints/last.ckpt, eval/metrics.json)."""
    return train_subtypes(subtype_phantom, tmp_path_factory.mktemp("subtype_run") / "run")


def one_series(phantom: Path) -> list[Path]:
    """The slices of the phantom's series with the most bleeding slices."""
    labels = dict(csv.reader((phantom / "labels.csv").open()))
    series: dict[str, list[Path]] = defaultdict(list)
    bleeding: dict[str, int] = defaultdict(int)
    for path in sorted((phantom / "stage_2_train").glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series[ds.SeriesInstanceUID].append(path)
        bleeding[ds.SeriesInstanceUID] += labels[ds.SOPInstanceUID] != "none"
    return series[max(series, key=lambda uid: bleeding[uid])]


#: an orientation other than RAS (x and y flipped: LPS), so reorientation is exercised
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_volume_case(root: Path, name: str, rng, lps: bool = False, lesion: int = 1) -> None:
    """A 24 x 24 x 12 scan at 2 x 2 x 4 mm: brain-like noise, a bright cube labelled 1 (or
    a dark one labelled 2), and its label volume beside it (root/images, root/labels)."""
    shape = (24, 24, 12)
    image = rng.normal(30, 5, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    x, y, z = rng.integers(4, 14), rng.integers(4, 14), rng.integers(2, 7)
    image[x : x + 6, y : y + 6, z : z + 4] = 75.0 if lesion == 1 else 10.0
    labels[x : x + 6, y : y + 6, z : z + 4] = lesion
    affine = np.diag([2.0, 2.0, 4.0, 1.0])
    affine[:3, 3] = (-24, -24, -24)
    if lps:
        affine = LPS @ affine
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), root / "images" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), root / "labels" / f"{name}.nii.gz")


@pytest.fixture(scope="session")
def volume_root(tmp_path_factory) -> Path:
    """NIfTI scans for the 3-D tasks: twelve scans of ten patients (two with a follow-up),
    a third stored LPS, hemorrhage (1) and infarct (2) cubes alternating."""
    root = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(0)
    names = [f"p{i:04d}_s0" for i in range(10)] + ["p0000_s1", "p0001_s1"]
    for i, name in enumerate(names):
        write_volume_case(root, name, rng, lps=i % 3 == 0, lesion=1 + i % 2)
    return root
