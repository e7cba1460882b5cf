"""`data.leakage=drop` and `data.resplit`: copies across splits are left out and counted;
a pre-split set is pooled and split again by patient."""

from __future__ import annotations

import logging

from test_leakage import plant_duplicate, split_by_patient

from stroke.data import StrokeDataModule


def test_drop_leaves_out_the_later_copy_and_counts_it(phantom_dir, tmp_path, caplog):
    root = tmp_path / "data"
    original, copy = plant_duplicate(phantom_dir, root)
    source = split_by_patient(root, root / "labels.csv", {"P0999", "P0003"}, {"P0004"})
    kept = StrokeDataModule(source, image_size=32, num_workers=0, cache=False)
    kept.setup("fit")
    dm = StrokeDataModule(source, image_size=32, num_workers=0, cache=False, leakage="drop")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    paths = {s.path for s in dm.samples}
    assert original in paths and copy not in paths  # the test copy goes, training keeps its own
    assert dm.leakage_dropped == {"test": 1}
    assert len(dm.datasets["test"]) == len(kept.datasets["test"]) - 1
    assert len(dm.datasets["train"]) == len(kept.datasets["train"])
    assert "1 later copies dropped (1 from test)" in dm.leakage_summary()
    assert any("1 from test" in w for w in dm.data_warnings)  # into metrics.json
    assert "images train/val/test now" in caplog.text
    assert "kept, the metrics may be inflated" in kept.leakage_summary()


def test_resplit_pools_a_presplit_source(phantom_dir, tmp_path):
    root = tmp_path / "data"
    plant_duplicate(phantom_dir, root)
    source = split_by_patient(root, root / "labels.csv", {"P0999", "P0003"}, {"P0004"})
    dm = StrokeDataModule(
        source, image_size=32, num_workers=0, cache=False, resplit=True, leakage="drop", seed=1
    )
    dm.setup("fit")
    test_patients = {s.patient_id for s in dm.samples if s.split == "test"}
    assert test_patients != {"P0999", "P0003"}  # split again, not the column's split
    for split in ("val", "test"):  # no patient in two splits, no copy of a training image
        train_paths = {s.path for s in dm.samples if s.split == "train"}
        assert not any(
            d.second.path in {s.path for s in dm.samples if s.split == split}
            and d.first.path in train_paths
            for d in dm.near_duplicates
        )
    folds = StrokeDataModule(source, image_size=32, num_workers=0, cache=False, resplit=True,
                             fold=0, folds=3)  # fmt: skip
    folds.setup("fit")  # cross-validation of a pre-split set, once pooled
    assert {s.split for s in folds.samples} == {"train", "val", "test"}
