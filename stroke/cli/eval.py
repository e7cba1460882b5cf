"""`stroke-eval ckpt_path=...`: the evaluation directory of a trained checkpoint.

The data are those the checkpoint was trained on (its run's `.hydra/config.yaml`, two
levels above `checkpoints/x.ckpt`), so the same seed gives the same split; `data.*`
overrides apply on top of them, and `data=<group>` (or a checkpoint without its run
directory) uses the data group of conf/eval.yaml instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.evaluation.report import evaluate_and_report
from stroke.hardware import resolve_device
from stroke.inference.checkpoint import checkpoint_task, read_checkpoint, run_config_of
from stroke.inference.consistency import align_preprocessing, check_windows
from stroke.inference.ensemble import checkpoint_paths, load_ensemble
from stroke.warnings_filter import quiet_third_party_warnings

log = logging.getLogger("stroke.eval")


def _cli_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def data_config(cfg: DictConfig, overrides: list[str] | None = None) -> tuple[DictConfig, str]:
    """The data config to evaluate on and a phrase saying where it came from."""
    overrides = _cli_overrides() if overrides is None else overrides
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    run_cfg = run_config_of(checkpoint_paths(cfg.ckpt_path)[0])
    if run_cfg is None or "data" not in run_cfg or "data" in keys:
        return cfg.data, "data group of conf/eval.yaml"
    applied = []
    for override, key in zip(overrides, keys, strict=True):
        if key.startswith("data.") and not override.startswith("~"):
            OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), force_add=True)
            applied.append(override)
    where = "the training run's data config"
    return run_cfg.data, where + (f" with {', '.join(applied)}" if applied else "")


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


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, object]:
    """Load the checkpoint safely, rebuild its data, predict val and test, write the report."""
    paths = checkpoint_paths(cfg.ckpt_path)
    if checkpoint_task(read_checkpoint(paths[0])) == "segmentation":
        from stroke.segmentation.evaluate import evaluate_segmentation_checkpoint

        if len(paths) > 1 or not Path(str(cfg.ckpt_path)).is_file():
            raise ConfigError("a segmentation checkpoint is evaluated alone: give one .ckpt file")
        return evaluate_segmentation_checkpoint(cfg, *data_config(cfg))
    classifier = load_ensemble(paths)
    data_cfg, origin = data_config(cfg)
    if classifier.members:
        check_ensemble_test_split(data_cfg, origin)
    # size, channels, normalisation as in training, unless the command line sets them
    data_cfg, preprocessing = align_preprocessing(
        data_cfg, classifier.preprocessing, _cli_overrides()
    )
    datamodule = instantiate(data_cfg)
    datamodule.setup("test")
    check_windows(datamodule.preprocessing, classifier.preprocessing, _cli_overrides())
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
    result = evaluate_and_report(
        classifier.net,
        datamodule,
        out_dir,
        instantiate(cfg.evaluation),
        resolve_device(cfg.device),
        context,
    )
    metrics = result["image_level"]["metrics"]
    print(
        f"test: accuracy {metrics['accuracy']['value']}, balanced accuracy "
        f"{metrics['balanced_accuracy']['value']}, ROC AUC {metrics['roc_auc']['value']}"
    )
    print(f"evaluation directory: {out_dir}")
    return result


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-eval`."""
    quiet_third_party_warnings()
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    main()
