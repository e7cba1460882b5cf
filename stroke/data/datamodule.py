"""The LightningDataModule every data config builds: source -> classes -> splits -> loaders."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from stroke.config import cache_home, config_default
from stroke.data.audit import (
    LeftOut,
    audit_samples,
    check_files,
    left_out_files,
    split_warnings,
    summarize,
    write_left_out,
)
from stroke.data.cache import ImageCache
from stroke.data.context import neighbour_indices
from stroke.data.dataset import ImageClassificationDataset, SampleDataset
from stroke.data.folds import assign_fold
from stroke.data.leakage import NearDuplicate, later_copies, leakage_summary, write_leakage_csv
from stroke.data.leakage_store import check_leakage
from stroke.data.preprocessing import DEFAULT_MEAN, DEFAULT_STD, Preprocessing, measured_statistics
from stroke.data.samples import (
    SPLITS,
    Sample,
    apply_class_map,
    resolve_classes,
    write_splits_csv,
)
from stroke.data.sampling import EpochSampler, training_position
from stroke.data.settings import DataSettings
from stroke.data.sources import DecodingSource, ImageSource
from stroke.data.splits import assign_splits, check_no_patient_overlap
from stroke.errors import ConfigError, DatasetError
from stroke.hardware import pin_memory, resolve_num_workers

log = logging.getLogger(__name__)


class StrokeDataModule(L.LightningDataModule):
    """Images from any source, split patient-aware, augmented on the train split only.

    Built from a config's flat `data.*` keys (`StrokeDataModule(source, batch_size=16,
    fold=2)`), which `stroke.data.settings.DataSettings` sorts into typed groups and checks
    before anything is read; or from a `DataSettings` built in code (`settings=`).
    """

    def __init__(
        self,
        source: ImageSource,
        settings: DataSettings | None = None,
        train_transform: Callable | None = None,
        batch_transform: Callable | None = None,
        **keys: Any,
    ) -> None:
        super().__init__()
        if not isinstance(source, ImageSource):
            raise ConfigError(
                f"data.source must be a source with a load() method (e.g. "
                f"stroke.data.FolderSource), got {type(source).__name__}"
            )
        if settings is not None and keys:
            raise ConfigError(
                f"give the datamodule its settings or data.* keys, not both (got {sorted(keys)})"
            )
        self.settings = settings = settings or DataSettings.from_keys(keys)
        self.source = source
        self.preprocessing = self._preprocessing(settings.preprocessing)
        self.sample_settings = settings.samples
        self.splits = settings.splits
        self.loading = settings.loading
        self.leakage = settings.leakage.leakage
        self.cache = settings.cache.cache
        self.cache_dir = Path(settings.cache.cache_dir or cache_home() / "images")
        self.num_workers = resolve_num_workers(self.loading.num_workers, cached=self.cache)
        # a source that knows its format (DICOM, NIfTI) decodes its own samples and says how
        reader = source.read if isinstance(source, DecodingSource) else None
        self.loader = self.preprocessing.loader(reader=reader)
        self.train_transform = train_transform
        # augmentation of whole training batches on the device (stroke.data.batch_augment)
        self.batch_transform = batch_transform
        if self.preprocessing.normalization == "image" and batch_transform is not None:
            raise ConfigError(
                "data.normalization=image cannot be undone by augmentation=gpu (it needs one "
                "mean/std for the batch); use a per-image augmentation"
            )
        #: images data.leakage=drop removed, per split
        self.leakage_dropped: dict[str, int] = {}
        self.near_duplicates: list[NearDuplicate] = []
        # decode each image once into a memory-mapped store shared by epochs, runs and trials
        self.image_cache = None
        self.samples: list[Sample] | None = None
        #: files of the data folder not used, and why; one line per kind of problem
        self.left_out: list[LeftOut] = []
        self.data_warnings: list[str] = []
        self.class_names: list[str] = []
        self.datasets: dict[str, SampleDataset] = {}

    def _preprocessing(self, keys: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing the keys describe, with the source's HU windows."""
        keys = dict(keys)
        windows = None
        if isinstance(self.source, DecodingSource):
            windows = self.source.preprocessing_record().get("dicom_windows")
        mean, std = keys.get("mean", DEFAULT_MEAN), keys.get("std", DEFAULT_STD)
        # mean/std "dataset": measured on the training split at setup, then recorded
        self.dataset_statistics = "dataset" in (mean, std)
        if self.dataset_statistics and keys.get("normalization", "fixed") != "fixed":
            raise ConfigError(
                f"data.mean/std=dataset measure fixed statistics; data.normalization="
                f"{keys['normalization']!r} uses each image's own: choose one"
            )
        if keys.get("image_size") is None:  # built outside a run: conf/data/_base.yaml's
            keys["image_size"] = config_default("data/_base", "image_size")
        keys.setdefault("in_chans", 1)
        keys["mean"] = DEFAULT_MEAN if mean == "dataset" else mean
        keys["std"] = DEFAULT_STD if std == "dataset" else std
        return Preprocessing(**keys, dicom_windows=windows)

    @property
    def batch_size(self) -> int:
        """Images per batch (`data.batch_size`)."""
        return self.loading.batch_size

    # -- what the model needs to know -------------------------------------------------
    @property
    def image_size(self) -> int:
        """Side of the square model input, in pixels."""
        return self.preprocessing.image_size

    @property
    def in_chans(self) -> int:
        """Channels of one slice (1 or 3): `data.in_chans`."""
        return self.preprocessing.in_chans

    @property
    def input_channels(self) -> int:
        """Channels of the network's input: `in_chans` per slice, 2k + 1 slices with context."""
        return self.preprocessing.channels

    @property
    def num_classes(self) -> int:
        """Number of classes after class_map (valid after setup)."""
        return len(self.class_names)

    def split_samples(self, split: str) -> list[Sample]:
        """The samples of one split (valid after setup)."""
        self._require_setup()
        return [s for s in self.samples if s.split == split]

    def model_arguments(self) -> dict[str, Any]:
        """What the model is sized by (valid after setup): `stroke.build.build_model` passes
        these to whichever model class `cfg.model` names."""
        return {
            "num_classes": self.num_classes,
            # 2.5D: the slice's channels and its neighbours'
            "input_channels": self.input_channels,
            "class_names": list(self.class_names),
            "class_counts": self.class_counts("train"),
        }

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class in a split, in class order: the basis of class weights."""
        counts = Counter(s.label for s in self.split_samples(split))
        return [counts.get(c, 0) for c in self.class_names]

    def write_splits(self, path: str | Path) -> None:
        """Record which image went to which split, so a run can be audited and reproduced."""
        self._require_setup()
        write_splits_csv(self.samples, Path(path))

    def write_left_out(self, path: str | Path) -> None:
        """Record every file of the data folder the run does not use, and why (skipped.csv)."""
        write_left_out(self.left_out, Path(path))

    def write_leakage_report(self, path: str | Path) -> None:
        """Record the near-duplicate pairs found across splits (nothing when there are none)."""
        if self.near_duplicates:
            write_leakage_csv(self.near_duplicates, Path(path))

    def state_dict(self) -> dict:
        """Preprocessing and classes, saved by Lightning in every checkpoint (plain values).

        With it, stroke-predict and stroke-export need nothing but the checkpoint file.
        """
        return {**self.preprocessing.record(), "class_names": list(self.class_names)}

    # -- Lightning hooks ---------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """List, map and split the samples once; build the three datasets."""
        if self.samples is not None:
            return
        where = repr(self.source)
        samples = self.source.load()
        if not samples:
            raise DatasetError(f"{where} holds no images")
        # nothing left out without a word: named in the log and in skipped.csv
        samples, self.left_out = audit_samples(samples, where)
        self.left_out += left_out_files(self.source, samples, self.left_out)
        check_files(samples)
        samples = apply_class_map(samples, self.sample_settings.class_map)
        if not samples:
            class_map = self.sample_settings.class_map
            raise DatasetError(f"data.class_map={class_map} drops every image of {where}")
        self.class_names = self._class_names(samples, where)
        if self.splits.resplit:
            presplit = Counter(s.split for s in samples if s.split is not None)
            log.info("data.resplit: the source's splits %s pooled and split again", dict(presplit))
            samples = [replace(s, split=None) for s in samples]
        if self.splits.fold is not None:
            self.samples = assign_fold(
                samples,
                self.splits.folds,
                self.splits.fold,
                self.splits.val_fraction,
                self.splits.test_fraction,
                self.splits.seed,
                self.splits.fold_split,
            )
        else:
            splits = self.splits
            self.samples = assign_splits(
                samples, splits.val_fraction, splits.test_fraction, splits.seed
            )
        # whatever the source and split scheme, a patient in two splits is leakage
        check_no_patient_overlap(self.samples)
        self.data_warnings = [w for w in [summarize(self.left_out, where)] if w]
        self.data_warnings += self._split_warnings()
        for warning in self.data_warnings:
            log.warning("data: %s", warning)
        if expected := summarize(self.left_out, where, notable=False):
            log.info("data: %s", expected)
        # decode now, so a missing codec or a bad window fails before training: the cache
        # build decodes every image once; without a cache, decode the first one
        if self.cache:
            loader = self._cached_loader()
        else:
            loader = self.loader
            self._check_decoding(loader)
        if self.dataset_statistics:
            self._measure_statistics(loader)
        self._build_datasets(loader)
        if len(self.datasets["train"]) == 0:
            raise DatasetError(f"no training images left in {where} after splitting")
        log.info(
            "data: %s, classes %s, images train/val/test %d/%d/%d, patients %d%s",
            where,
            self.class_names,
            *(len(self.datasets[s]) for s in SPLITS),
            len({s.patient_id for s in self.samples}),
            "" if self.splits.fold is None else f", fold {self.splits.fold} of {self.splits.folds}",
        )
        # through the cache: the leakage check reads every image, the cache has them decoded
        self.near_duplicates = check_leakage(
            self.samples, self._image_view(loader), self.leakage, self.num_workers
        )
        if self.leakage == "drop" and self.near_duplicates:
            self._drop_later_copies(loader)

    def _build_datasets(self, loader: Callable) -> None:
        class_to_idx = {c: i for i, c in enumerate(self.class_names)}
        for split in SPLITS:
            transform = self.train_transform if split == "train" else None
            self.datasets[split] = self._dataset(
                [s for s in self.samples if s.split == split], class_to_idx, loader, transform
            )

    def _measure_statistics(self, loader: Callable) -> None:
        """`data.mean=dataset data.std=dataset`: measured on the training images, then
        recorded in the checkpoint like given values."""
        train = [s for s in self.samples if s.split == "train"]
        self.preprocessing = measured_statistics(
            self.preprocessing, train, self._image_view(loader)
        )

    def _drop_later_copies(self, loader: Callable) -> None:
        """`data.leakage=drop`: val and test images that copy one of an earlier split go."""
        dropped = later_copies(self.near_duplicates)
        keys = {(s.path, s.slice_index) for s in dropped}
        self.samples = [s for s in self.samples if (s.path, s.slice_index) not in keys]
        self.leakage_dropped = dict(Counter(s.split for s in dropped))
        self._build_datasets(loader)
        message = self.leakage_summary()
        self.data_warnings.append(message)
        log.warning("data: %s; images train/val/test now %d/%d/%d", message,
                    *(len(self.datasets[s]) for s in SPLITS))  # fmt: skip

    def leakage_summary(self) -> str | None:
        """One line on the near duplicates found across splits and what was done (reports)."""
        return leakage_summary(self.near_duplicates, self.leakage, self.leakage_dropped)

    # -- what a task-specific datamodule (e.g. segmentation) changes ------------------------
    def _class_names(self, samples: list[Sample], where: str) -> list[str]:
        """The classes the model outputs: the labels found (or `data.classes`)."""
        return resolve_classes(samples, self.sample_settings.classes, where)

    def _split_warnings(self) -> list[str]:
        """A line for each validation or test split missing a class."""
        return split_warnings(self.samples, self.class_names)

    def _dataset(
        self,
        samples: list[Sample],
        class_to_idx: dict[str, int],
        loader: Callable,
        transform: Callable | None,
    ) -> SampleDataset:
        """The torch Dataset of one split."""
        neighbours = self._neighbours(samples)
        return ImageClassificationDataset(
            samples, class_to_idx, loader, self.preprocessing, transform, neighbours
        )

    def _neighbours(self, samples: list[Sample]) -> list[list[int]] | None:
        """2.5D: each sample's context slices (stroke/data/context.py); None without."""
        k = self.preprocessing.context_slices
        return neighbour_indices(samples, k, self.sample_settings.slice_regex) if k else None

    def _check_decoding(self, loader: Callable) -> None:
        """Without a cache: fail before training when the data cannot be decoded."""
        loader(self.samples[0])

    def _image_view(self, loader: Callable) -> Callable:
        """The loader as the leakage check reads it: the image pixels alone."""
        return loader

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches through `batch_transform` once on the device; others unchanged."""
        trainer = self.trainer
        if self.batch_transform is None or trainer is None or not trainer.training:
            return batch
        images, targets = batch
        mean, std = self.preprocessing.mean, self.preprocessing.std
        return self.batch_transform(images, mean, std), targets

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self._require_setup()
        pin = pin_memory(self.loading.pin_memory)
        # A last training batch of a single image breaks batch norm: drop that one image
        # (a different one each epoch, as the order is shuffled); other short batches stay.
        size = len(self.datasets[split])
        drop_last = shuffle and size > self.batch_size and size % self.batch_size == 1
        # order and augmentation from (seed, epoch): reproducible, and resumable mid-epoch
        sampler = self._epoch_sampler(size) if shuffle else None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=pin,
            drop_last=drop_last,
            # worker seeds from here, not from the global RNG the model's dropout draws on
            generator=torch.Generator().manual_seed(self.splits.seed),
        )

    def _epoch_sampler(self, size: int) -> EpochSampler:
        """Shuffled, or with `data.sampler=weighted` drawn with probability 1 / (images of
        their class): balanced batches."""
        weights = None
        if self.loading.sampler == "weighted":
            counts = self.class_counts("train")
            targets = torch.tensor(self.datasets["train"].targets)
            weights = 1.0 / torch.tensor(counts, dtype=torch.double)[targets]
        return EpochSampler(
            size,
            self.splits.seed,
            self.batch_size,
            weights,
            lambda: training_position(self.trainer),
        )

    def _cached_loader(self) -> Callable:
        """The loader answered from the image cache (built here on first use)."""

        self.image_cache = ImageCache(self.loader, self.samples, self.cache_dir)
        return self.image_cache

    def _require_setup(self) -> None:
        if self.samples is None:
            raise RuntimeError("call setup() on the datamodule first")
