"""The epoch logs and the evaluation report: the same names and the same values, for every
metric of the vocabulary (`METRICS`), not a chosen few, on splits that leave some undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stroke.evaluation import EvaluationConfig, SplitPredictions, write_evaluation
from stroke.evaluation.epoch_metrics import (
    EpochPredictions,
    class_support,
    epoch_scores,
    undefined_metrics,
)
from stroke.evaluation.evaluate import evaluate_predictions
from stroke.evaluation.metrics import METRICS

CLASSES3 = ["normal", "hemorrhagic", "ischemic"]


def predictions(n: int, num_classes: int, seed: int, labels=None):
    """Float32 softmax probabilities (as a network gives them, ties included) and targets."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n) if labels is None else np.asarray(labels)
    logits = np.round(rng.normal(size=(len(y), num_classes)), 1)
    logits[np.arange(len(y)), y] += 1.0
    probs = torch.from_numpy(logits).float().softmax(dim=1).numpy()
    return probs, y


#: (name, classes, probs, targets): binary; three classes; a class absent from the targets
#: (its recall, ROC AUC and average precision undefined); every image of one class
CASES = [
    ("binary", CLASSES3[:2], *predictions(90, 2, seed=0)),
    ("three classes", CLASSES3, *predictions(120, 3, seed=1)),
    ("a class absent", CLASSES3, *predictions(60, 3, seed=2, labels=[0, 2] * 30)),
    ("one class only", CLASSES3[:2], *predictions(20, 2, seed=3, labels=[1] * 20)),
]


def every_key(classes) -> set[str]:
    """Every name METRICS gives: each metric, and each per-class metric of each class."""
    return {m.name for m in METRICS} | {
        f"{m.name}/{c}" for m in METRICS if m.per_class for c in classes
    }


def logged(probs, targets, classes) -> dict[str, float]:
    """What the validation loop logs: the predictions come in three batches."""
    epoch = EpochPredictions(len(classes))
    for batch in np.array_split(np.arange(len(targets)), 3):
        epoch.update(torch.from_numpy(probs[batch]), torch.from_numpy(targets[batch]))
    return epoch_scores(*epoch.compute(), "val", classes)


def reported(probs, targets, classes) -> dict[str, dict]:
    """metrics.json's image-level metrics of the same predictions."""
    paths = [f"{i}.png" for i in range(len(targets))]
    split = SplitPredictions("test", paths, paths, targets, probs.astype(float))
    result = evaluate_predictions(split, None, classes, EvaluationConfig(n_boot=10))
    return result["image_level"]["metrics"]


@pytest.mark.parametrize(("case", "classes", "probs", "targets"), CASES, ids=[c[0] for c in CASES])
def test_every_epoch_metric_equals_the_report(case, classes, probs, targets):
    epoch, report = logged(probs, targets, classes), reported(probs, targets, classes)
    keys = every_key(classes)
    assert set(epoch) == {f"val/{k}" for k in keys}
    assert keys <= set(report)
    for key in sorted(keys):
        value = report[key]["value"]
        if value is None:  # undefined: null in metrics.json, NaN in the log, never a 0
            assert math.isnan(epoch[f"val/{key}"]), key
        else:
            assert epoch[f"val/{key}"] == pytest.approx(value, abs=1e-6), key
    undefined = {k for k in keys if report[k]["value"] is None}
    if case == "a class absent":
        assert {"recall/hemorrhagic", "roc_auc/hemorrhagic"} <= undefined
        assert report["roc_auc"]["value"] is not None  # the mean of the classes present
    elif case == "one class only":
        assert {"roc_auc", "roc_auc/hemorrhagic", "specificity/hemorrhagic"} <= undefined
    else:
        assert not undefined


def test_a_class_absent_is_undefined_with_a_reason_not_torchmetrics_zero():
    probs, targets = predictions(40, 3, seed=4, labels=[0, 1] * 20)
    values = logged(probs, targets, CLASSES3)
    assert np.isnan(values["val/roc_auc/ischemic"]) and np.isnan(values["val/recall/ischemic"])
    reasons = undefined_metrics(values, "val", CLASSES3, class_support(targets, 3))
    assert reasons["val/roc_auc/ischemic"] == "no val image of class ischemic"
    assert set(reasons) == {k for k, v in values.items() if np.isnan(v)}


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_an_epoch_without_images_is_undefined_everywhere():
    values = epoch_scores(*EpochPredictions(3).compute(), "val", CLASSES3)
    assert set(values) == {f"val/{k}" for k in every_key(CLASSES3)}
    assert all(np.isnan(v) for v in values.values())


def test_the_report_shows_every_metric(tmp_path):
    probs, targets = CASES[1][2:]
    paths = [f"{i}.png" for i in range(len(targets))]
    split = SplitPredictions("test", paths, paths, targets, probs.astype(float))
    write_evaluation(tmp_path, split, None, CLASSES3, EvaluationConfig(n_boot=10))
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {m.label} | " in report for m in METRICS)
    per_class = [m.name for m in METRICS if m.per_class]
    assert "| class | " + " | ".join(per_class) + " |" in report


def _rank_scores(rank: int, world: int, port: int, out: str) -> None:
    """One DDP process: scores its share of the predictions (uneven shares) after syncing."""
    import json
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        probs, targets = CASES[1][2:]
        share = slice(0, 50) if rank == 0 else slice(50, None)
        epoch = EpochPredictions(3)
        epoch.update(torch.from_numpy(probs[share]), torch.from_numpy(targets[share]))
        values = epoch_scores(*epoch.compute(), "val", CLASSES3)
        with open(f"{out}/rank{rank}.json", "w") as fh:
            json.dump(values, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes start: ~10 s
def test_ddp_processes_score_the_whole_epoch(tmp_path):
    """Each process holds part of the epoch; every one logs the metrics of all of it."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank_scores, args=(2, port, str(tmp_path)), nprocs=2)
    probs, targets = CASES[1][2:]
    whole = logged(probs, targets, CLASSES3)
    for rank in (0, 1):
        values = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert values == pytest.approx(whole), rank
