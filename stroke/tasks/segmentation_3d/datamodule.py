"""The 3-D segmentation datamodule: whole scans, split by patient, planned nnU-Net style.

Scans come from a `VolumeSource` (NIfTI volumes or DICOM series with label volumes). The
splits, folds and the patient-overlap check are the 2-D sources' (stroke.data.splits,
.folds), stratified on the lesion classes a scan holds; the leakage check hashes each
scan's axial mean projection. The plan (target spacing, patch, batch, network shape,
intensity scheme) is measured on the training split (`data.plan=auto`) or read from a
YAML (`data.plan=<file>`, see `stroke-plan`), recorded in every checkpoint, and written
into the run directory as `plan.yaml`. Decoded, resampled volumes are cached by MONAI
(in memory, or on disk with `data.cache=disk`); patches are drawn from them each epoch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset, list_data_collate
from monai.transforms import Compose, LoadImage, Orientation
from torch.utils.data import DataLoader

from stroke.config import cache_home
from stroke.data.audit import check_files
from stroke.data.folds import assign_fold
from stroke.data.leakage import leakage_summary, resolve_leakage_mode, write_leakage_csv
from stroke.data.leakage_store import check_leakage
from stroke.data.samples import SPLITS, Sample, write_splits_csv
from stroke.data.splits import assign_splits, check_no_patient_overlap
from stroke.data.volume_fingerprint import fingerprint
from stroke.data.volume_plan import VolumePlan, plan_from_mapping, read_plan, write_plan
from stroke.data.volume_planner import plan_volumes
from stroke.data.volume_source import VolumeSource
from stroke.errors import ConfigError, DatasetError
from stroke.hardware import pin_memory, resolve_num_workers
from stroke.parameters import FRACTION, WORKERS, Boolean, Choice, Integer, Number
from stroke.tasks.base import plain_values
from stroke.tasks.segmentation_3d.transforms import (
    IMAGE,
    LABEL,
    VolumeAugmentation,
    patch_transforms,
    preprocessing_transforms,
)

log = logging.getLogger(__name__)

#: `data.cache`: where the decoded, resampled volumes are kept between epochs
CACHES = ("memory", "disk", "none")


def network_plan(plan: VolumePlan) -> dict[str, Any]:
    """What the network and its sliding window need of a plan (plain values)."""
    return {
        "patch_size": list(plan.patch_size),
        "strides": [list(s) for s in plan.strides],
        "kernel_sizes": [list(k) for k in plan.kernel_sizes],
        "channels": list(plan.channels),
        "spacing": list(plan.spacing),
    }


def axial_projection(sample: Sample) -> np.ndarray:
    """A scan as the leakage check hashes it: the mean of its axial slices in the brain
    window (0-80 HU), uint8, in RAS orientation (so a re-exported copy matches)."""
    volume = LoadImage(image_only=True, ensure_channel_first=True)(str(sample.path))
    volume = Orientation(axcodes="RAS", labels=None)(volume)
    window = np.clip(np.asarray(volume[0], dtype=np.float32), 0.0, 80.0) / 80.0
    return np.rint(window.mean(axis=2) * 255.0).astype(np.uint8)


class VolumeSegmentationDataModule(L.LightningDataModule):
    """Scans and their label volumes for `VolumeSegmenter` (experiment=lesion_segmentation_3d).

    Args:
        source: a VolumeSource (data.source).
        lesion_classes: what label values 1..K mean, e.g. [hemorrhage, infarct].
        plan: `auto` (measured on the training split), a plan YAML written by stroke-plan,
            or a plan's values (a checkpoint's, when stroke-eval rebuilds its data).
        plan_overrides: plan keys to replace (e.g. {patch_size: [64, 64, 32]}).
        batch_size: patches per training step; null: the plan's.
        memory_budget_mb: what `plan=auto` sizes the batch for; null: the device's.
        val_fraction, test_fraction, folds, fold, fold_split, seed: as for 2-D data.
        leakage: warn, error or off (near-duplicate scans across splits).
        cache: memory, disk or none; cache_dir: where `disk` keeps them.
        num_workers: loader processes (auto: one per spare CPU).
        train_transform: a VolumeAugmentation (augmentation=volume); null: patches only.
    """

    #: the `data.*` keys stroke-train checks before reading any scan (stroke.parameters)
    CONSTRAINTS: ClassVar[dict[str, Any]] = {
        "batch_size": Integer(1, also=(None,)),
        "patches_per_volume": Integer(1),
        "memory_budget_mb": Number(above=0, also=(None,)),
        "val_fraction": FRACTION,
        "test_fraction": FRACTION,
        "seed": Integer(),
        "cache": Choice(CACHES),
        "num_workers": WORKERS,
        "pin_memory": Boolean(also=(None,)),
    }

    def __init__(
        self,
        source: VolumeSource,
        lesion_classes: list[str],
        plan: str | Mapping[str, Any] | None = "auto",
        plan_overrides: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        patches_per_volume: int = 2,
        memory_budget_mb: float | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        folds: int = 5,
        fold: int | None = None,
        fold_split: str = "test",
        seed: int = 42,
        leakage: str = "warn",
        cache: str = "memory",
        cache_dir: str | None = None,
        num_workers: int | str = "auto",
        pin_memory: bool | None = None,
        train_transform: VolumeAugmentation | None = None,
        batch_transform: Any = None,
        root: str | None = None,  # data.root: what data.source.root interpolates
    ) -> None:
        super().__init__()
        if not isinstance(source, VolumeSource):
            raise ConfigError(
                f"data.source must be a stroke.data.volume_source.VolumeSource for 3-D "
                f"segmentation, got {type(source).__name__}"
            )
        if not lesion_classes:
            raise ConfigError("data.lesion_classes must name the label values 1..K")
        if train_transform is not None and not isinstance(train_transform, VolumeAugmentation):
            raise ConfigError(
                f"augmentation {type(train_transform).__name__} is a 2-D policy; 3-D "
                "segmentation takes augmentation=volume (or augmentation=none)"
            )
        if batch_transform is not None:
            raise ConfigError("augmentation=gpu is 2-D only; use augmentation=volume")
        if cache not in CACHES:
            raise ConfigError(f"data.cache must be one of {list(CACHES)}, got {cache!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(
                f"data.batch_size must be an integer >= 1 or null, got {batch_size!r}"
            )
        self.source = source
        self.source.lesion_classes = list(lesion_classes)
        self.lesion_classes = [str(c) for c in lesion_classes]
        self.class_names = list(self.lesion_classes)
        self.plan_setting = plan
        # null entries (the config's placeholders) keep the plan's value
        self.plan_overrides = {
            k: v for k, v in plain_values(plan_overrides or {}).items() if v is not None
        }
        self.requested_batch_size = batch_size
        self.augmentation = train_transform
        self.patches_per_volume = (
            train_transform.patches_per_volume if train_transform else int(patches_per_volume)
        )
        self.memory_budget_mb = memory_budget_mb
        self.split_settings = {
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "folds": folds,
            "fold": fold,
            "fold_split": fold_split,
            "seed": seed,
        }
        self.leakage = resolve_leakage_mode(leakage)
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else cache_home() / "volumes"
        self.num_workers = resolve_num_workers(num_workers, cached=cache != "none")
        self.pin_memory = pin_memory
        self.plan: VolumePlan | None = None
        self.samples: list[Sample] | None = None
        self.datasets: dict[str, Any] = {}
        self.near_duplicates: list = []
        self.data_warnings: list[str] = []

    # -- what the run and the model need --------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Patches per training step: data.batch_size, else the plan's."""
        if self.requested_batch_size is not None:
            return self.requested_batch_size
        return int(self.plan.batch_size) if self.plan is not None else 2

    @property
    def input_channels(self) -> int:
        return 1

    @property
    def num_classes(self) -> int:
        """Output channels: background and each lesion class."""
        return len(self.lesion_classes) + 1

    def split_samples(self, split: str) -> list[Sample]:
        self._require_setup()
        return [s for s in self.samples if s.split == split]

    def model_arguments(self) -> dict[str, Any]:
        """The lesion classes and the planned network shape (valid after setup)."""
        self._require_setup()
        return {
            "lesion_classes": list(self.lesion_classes),
            "input_channels": self.input_channels,
            "network_plan": network_plan(self.plan),
        }

    def state_dict(self) -> dict[str, Any]:
        """The plan and the classes, kept in every checkpoint (stroke-predict reads a raw
        volume as training did from it alone)."""
        return {
            "volume_plan": self.plan.as_dict() if self.plan is not None else None,
            "lesion_classes": list(self.lesion_classes),
            "class_names": list(self.class_names),
        }

    def write_splits(self, path: str | Path) -> None:
        self._require_setup()
        write_splits_csv(self.samples, Path(path))

    def write_leakage_report(self, path: str | Path) -> None:
        if self.near_duplicates:
            write_leakage_csv(self.near_duplicates, Path(path))

    def write_left_out(self, path: str | Path) -> None:
        """Nothing is left out silently: a scan without its label volume is an error."""

    def write_plan(self, path: str | Path) -> None:
        """The plan this run trains with, as a YAML stroke-plan's readers accept."""
        self._require_setup()
        write_plan(self.plan, Path(path))

    def leakage_summary(self) -> str | None:
        return leakage_summary(self.near_duplicates, self.leakage, {})

    # -- Lightning hooks ------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.plan = self.make_plan()
        train = self.split_samples("train")
        self.near_duplicates = check_leakage(self.samples, axial_projection, self.leakage)
        self._build_datasets()
        counts = {split: len(self.datasets[split]) for split in SPLITS}
        lesions = Counter(s.label for s in train)
        log.info(
            "data: %s, scans train/val/test %d/%d/%d, patients %d, training scans by lesion "
            "classes %s; plan: spacing %s mm, patch %s, batch %d",
            repr(self.source), counts["train"], counts["val"], counts["test"],
            len({x.patient_id for x in self.samples}), dict(lesions),
            list(self.plan.spacing), list(self.plan.patch_size), self.batch_size,
        )  # fmt: skip

    def make_plan(self) -> VolumePlan:
        """Split the scans by patient and resolve the plan on the training split, without
        reading the scans for training (what `stroke-plan` runs)."""
        if self.plan is not None:
            return self.plan
        where = repr(self.source)
        samples = self.source.load()
        check_files([s for s in samples if s.path.is_file()])
        s = self.split_settings
        if s["fold"] is not None:
            self.samples = assign_fold(
                samples, s["folds"], s["fold"], s["val_fraction"], s["test_fraction"],
                s["seed"], s["fold_split"],
            )  # fmt: skip
        else:
            self.samples = assign_splits(samples, s["val_fraction"], s["test_fraction"], s["seed"])
        check_no_patient_overlap(self.samples)
        train = self.split_samples("train")
        if not train:
            raise DatasetError(f"no training scans left in {where} after splitting")
        self.plan = self._resolve_plan(train)
        return self.plan

    def _resolve_plan(self, train: list[Sample]) -> VolumePlan:
        """The run's plan: measured on the training scans, or read; then the overrides."""
        if isinstance(self.plan_setting, Mapping):  # a checkpoint's (stroke-eval)
            plan = plan_from_mapping(plain_values(self.plan_setting), "the checkpoint's plan: ")
        elif self.plan_setting in (None, "auto"):
            cases = [(s.path, s.mask_path) for s in train]
            plan = plan_volumes(fingerprint(cases), memory_budget_mb=self.memory_budget_mb)
        else:
            plan = read_plan(Path(str(self.plan_setting)).expanduser())
        return plan.override(**self.plan_overrides) if self.plan_overrides else plan

    def _cases(self, split: str) -> list[dict[str, str]]:
        return [
            {IMAGE: str(s.path), LABEL: str(s.mask_path), "case": s.series_id or s.path.name}
            for s in self.split_samples(split)
        ]

    def _build_datasets(self) -> None:
        plan = self.plan.as_dict()
        fixed = list(preprocessing_transforms(plan).transforms)
        patch = self.plan.patch_size
        random = (
            self.augmentation.transforms(patch)
            if self.augmentation is not None
            else patch_transforms(patch, self.patches_per_volume)
        )
        for split in SPLITS:
            steps = fixed + random if split == "train" else fixed
            self.datasets[split] = self._dataset(self._cases(split), Compose(steps))

    def _dataset(self, cases: list[dict], transform: Compose):
        if self.cache == "memory":
            return CacheDataset(cases, transform, progress=False, num_workers=None)
        if self.cache == "disk":
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            return PersistentDataset(cases, transform, cache_dir=self.cache_dir)
        return Dataset(cases, transform)

    def train_dataloader(self) -> DataLoader:
        volumes = max(1, self.batch_size // self.patches_per_volume)
        return self._loader("train", volumes, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", 1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", 1, shuffle=False)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self._require_setup()
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=pin_memory(self.pin_memory),
            collate_fn=list_data_collate,
            generator=torch.Generator().manual_seed(int(self.split_settings["seed"])),
        )

    def _require_setup(self) -> None:
        if self.samples is None:
            raise RuntimeError("call setup() on the datamodule first")
