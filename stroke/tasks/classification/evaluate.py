"""`stroke-eval` on a classifier (one checkpoint or a fold ensemble): its data rebuilt with the
checkpoint's preprocessing, val and test predicted, the report written."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from stroke.errors import ConfigError
from stroke.evaluation.attention import AttentionPooler
from stroke.evaluation.report import evaluate_and_report
from stroke.hardware import resolve_device
from stroke.inference.consistency import align_preprocessing, check_windows
from stroke.tasks.classification.ensemble import load_ensemble


def check_ensemble_test_split(data_cfg: DictConfig, origin: str) -> None:
    """An ensemble of the folds of `data.fold_split=test` has seen every test patient: each
    fold's test split is training data of the other folds."""
    if data_cfg.get("fold") is None or data_cfg.get("fold_split", "test") != "test":
        return
    raise ConfigError(
        f"the ensemble would be scored on the test split of fold {data_cfg.fold} ({origin}), "
        "but the other folds' models trained on those patients; evaluate it on other data "
        "(data=... data.root=...), or cross-validate with data.fold_split=val, whose test "
        "split is the same held-out patients in every fold"
    )


def evaluate_classifier(
    cfg: DictConfig,
    paths: list[Path],
    data_cfg: DictConfig,
    origin: str,
    overrides: list[str],
) -> dict[str, object]:
    """Load the checkpoint(s) safely, rebuild the data, predict val and test, write the report."""
    classifier = load_ensemble(paths)
    if classifier.members:
        check_ensemble_test_split(data_cfg, origin)
    # size, channels, normalisation as in training, unless the command line sets them
    data_cfg, preprocessing = align_preprocessing(data_cfg, classifier.preprocessing, overrides)
    datamodule = instantiate(data_cfg)
    datamodule.setup("test")
    check_windows(datamodule.preprocessing, classifier.preprocessing, overrides)
    classifier.check_matches(
        datamodule.class_names, datamodule.preprocessing.channels, f"the data ({origin})"
    )
    out_dir = Path(cfg.paths.output_dir)
    context = {
        "checkpoint": ", ".join(map(str, classifier.members)) or str(classifier.path),
        "backbone": classifier.backbone.get("name"),
        "data": origin,
        "preprocessing": preprocessing,
        "data source": repr(datamodule.source),
    }
    stored = classifier.attention_pooler
    result = evaluate_and_report(
        classifier.net,
        datamodule,
        out_dir,
        instantiate(cfg.evaluation),
        resolve_device(cfg.device),
        context,
        # the run's own attention pooling, not one fitted anew on this data's train split
        AttentionPooler.from_state(stored) if stored and not classifier.members else None,
    )
    metrics = result["image_level"]["metrics"]
    print(
        f"test: accuracy {metrics['accuracy']['value']}, balanced accuracy "
        f"{metrics['balanced_accuracy']['value']}, ROC AUC {metrics['roc_auc']['value']}"
    )
    print(f"evaluation directory: {out_dir}")
    return result
