"""Patient-grouped stratified K-fold, and the weighted sampler for imbalanced classes."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import TINY, compose_train, make_class_folders
from hydra.utils import instantiate

from stroke.data import FolderSource, PresplitSource, StrokeDataModule
from stroke.data.folds import assign_fold
from stroke.errors import ConfigError, DatasetError

PATIENT = r"^(p\d+_[a-z]+)_"  # patient ids per class: p003_normal, p003_stroke, ...


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """20 normal patients x 4 images and 20 stroke patients x 2 images (2:1 by image)."""
    root = tmp_path_factory.mktemp("imbalanced")
    return make_class_folders(root, {"normal": 80, "stroke": 40}, size=16, patients=20)


def fold_samples(root, folds=5, seed=0, **kwargs):
    samples = FolderSource(root, patient_regex=PATIENT).load()
    return [assign_fold(samples, folds, i, 0.2, 0.2, seed, **kwargs) for i in range(folds)]


def test_test_folds_partition_the_data_and_never_split_a_patient(imbalanced):
    runs = fold_samples(imbalanced, folds=5)
    everything = {(s.path, s.slice_index) for s in runs[0]}
    held_out = [{(s.path, s.slice_index) for s in run if s.split == "test"} for run in runs]
    assert set().union(*held_out) == everything  # every image is tested once ...
    assert sum(len(h) for h in held_out) == len(everything)  # ... and only once
    for run in runs:
        splits_of = {}
        for s in run:
            splits_of.setdefault(s.patient_id, set()).add(s.split)
        assert all(len(v) == 1 for v in splits_of.values())
        assert {s.split for s in run} == {"train", "val", "test"}


def test_folds_keep_class_proportions(imbalanced):
    runs = fold_samples(imbalanced, folds=5)
    overall = 80 / 120
    for run in runs:
        test = [s.label for s in run if s.split == "test"]
        assert abs(Counter(test)["normal"] / len(test) - overall) <= 0.1
        train = [s.label for s in run if s.split == "train"]
        assert abs(Counter(train)["normal"] / len(train) - overall) <= 0.1


def test_folds_are_seeded(imbalanced):
    first, again, other = (fold_samples(imbalanced, seed=s)[0] for s in (3, 3, 4))
    assert [s.split for s in first] == [s.split for s in again]
    assert [s.split for s in first] != [s.split for s in other]


def test_fold_split_val_keeps_one_test_set_and_rotates_validation(imbalanced):
    runs = fold_samples(imbalanced, folds=4, fold_split="val")
    tests = [{s.path for s in run if s.split == "test"} for run in runs]
    assert all(t == tests[0] for t in tests) and tests[0]
    vals = [{s.path for s in run if s.split == "val"} for run in runs]
    assert sum(len(v) for v in vals) == len(set().union(*vals)) == 120 - len(tests[0])


@pytest.mark.parametrize(
    "folds, fold, message",
    [
        (5, 5, r"data.fold must be an integer in 0..4 \(data.folds=5\), got 5"),
        (1, 0, "data.folds must be an integer >= 2, got 1"),
        (50, 0, "data.folds=50 needs at least 50 patients, the data has 40"),
    ],
)
def test_bad_fold_settings_are_named(imbalanced, folds, fold, message):
    samples = FolderSource(imbalanced, patient_regex=PATIENT).load()
    with pytest.raises(DatasetError, match=message):
        assign_fold(samples, folds, fold, 0.2, 0.2, 0)


def test_presplit_data_cannot_be_cross_validated(tmp_path):
    make_class_folders(tmp_path / "train", {"normal": 6, "stroke": 6})
    make_class_folders(tmp_path / "test", {"normal": 2, "stroke": 2})
    dm = StrokeDataModule(PresplitSource(tmp_path), image_size=16, num_workers=0, fold=0)
    with pytest.raises(DatasetError, match="needs data without fixed splits"):
        dm.setup("fit")


def test_config_selects_a_fold(phantom_dir, tmp_path):
    cfg = compose_train(
        [*TINY, f"data.root={phantom_dir}", "data.folds=3", "data.fold=2"], tmp_path
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    expected = fold_samples_of(dm.source.load(), 3, 2, cfg.seed)
    assert [s.split for s in dm.samples] == expected
    assert len({s.patient_id for s in dm.split_samples("test")}) == 3  # 9 patients / 3 folds


def fold_samples_of(samples, folds, fold, seed):
    return [s.split for s in assign_fold(samples, folds, fold, 0.15, 0.15, seed)]


# -- weighted sampler ----------------------------------------------------------------------
def test_weighted_sampler_balances_classes(tmp_path):
    root = make_class_folders(tmp_path, {"normal": 90, "stroke": 10}, size=16)
    dm = StrokeDataModule(
        FolderSource(root),
        image_size=16,
        num_workers=0,
        sampler="weighted",
        val_fraction=0.1,
        test_fraction=0.1,
        leakage="off",
    )
    dm.setup("fit")
    targets = dm.datasets["train"].targets
    assert Counter(targets)[1] / len(targets) < 0.15  # imbalanced on disk
    loader = dm.train_dataloader()
    drawn = [targets[i] for _ in range(20) for i, _seed in loader.sampler]
    assert len(drawn) == 20 * len(targets)  # an epoch is still one pass worth of images
    assert abs(Counter(drawn)[1] / len(drawn) - 0.5) < 0.05
    plain = StrokeDataModule(FolderSource(root), image_size=16, num_workers=0, leakage="off")
    plain.setup("fit")
    shuffled = plain.train_dataloader().sampler
    assert shuffled.weights is None  # a permutation: each image once an epoch
    assert sorted(i for i, _seed in shuffled) == list(range(len(plain.datasets["train"])))


def test_unknown_sampler_is_named():
    with pytest.raises(
        ConfigError, match="data.sampler='balanced': expected one of \\[None, 'weighted'\\]"
    ):
        StrokeDataModule(FolderSource("/anywhere"), sampler="balanced")
