"""The real head CT hemorrhage set through the CSV source and the published preset."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATASETS, compose_train

from stroke.cli.train import train

HEAD_CT = SHARED_DATASETS / "head_ct"
pytestmark = pytest.mark.skipif(
    not (HEAD_CT / "labels.csv").is_file(),
    reason=f"real head CT data not found at {HEAD_CT} (it sits in shared/ beside the checkout)",
)


def test_head_ct_preset_composes_with_the_csv_source(tmp_path):
    cfg = compose_train(
        ["experiment=head_ct_hemorrhage", "data=head_ct", f"data.root={HEAD_CT}"], tmp_path
    )
    assert cfg.data.source._target_ == "stroke.data.CsvSource"
    assert cfg.data.image_size == 150 and cfg.model.backbone.name == "cnn_small"
    assert cfg.trainer.max_epochs == 10


@pytest.mark.slow
def test_head_ct_hemorrhage_trains_on_the_real_images(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(
        [
            "experiment=head_ct_hemorrhage",
            "data=head_ct",
            f"data.root={HEAD_CT}",
            "data.num_workers=0",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "~callbacks.rich_progress_bar",
        ],
        run_dir,
    )
    train(cfg)
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["classes"] == ["none", "hemorrhage"]
    splits = (run_dir / "splits.csv").read_text().splitlines()
    assert len(splits) == 1 + 200  # every labelled image went to a split
    assert 0.0 <= summary["metrics"]["test/accuracy"] <= 1.0
