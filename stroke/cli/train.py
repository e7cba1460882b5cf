"""`stroke-train`: compose the config, build data, model and trainer, fit, then test.

The test split is scored with the run's best checkpoint, and `stroke-eval`'s report of it
is written into `<run>/eval/`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stroke.build import build_datamodule, build_model, build_trainer
from stroke.config import CONFIG_PATH
from stroke.runs.record import RunRecorder, log_hparams
from stroke.warnings_filter import quiet_third_party_warnings

log = logging.getLogger("stroke.train")


def _best_checkpoint(trainer: L.Trainer) -> str:
    return trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""


def evaluate_test_split(cfg: DictConfig, model, datamodule, trainer: L.Trainer) -> Path:
    """The stroke-eval report of the tested weights, in `<run>/eval/` (the model writes the
    report of its task: a classifier's or a segmenter's)."""
    eval_dir = Path(cfg.paths.output_dir) / "eval"
    context = {
        "checkpoint": _best_checkpoint(trainer) or "current weights (no best checkpoint)",
        "backbone": model.describe(),
        "data source": repr(datamodule.source),
    }
    device = trainer.strategy.root_device
    model.write_evaluation(datamodule, eval_dir, instantiate(cfg.evaluation), device, context)
    log.info("evaluation report: %s", eval_dir / "report.md")
    return eval_dir


def _warn_double_balancing(cfg: DictConfig) -> None:
    if cfg.data.get("sampler") == "weighted" and cfg.model.get("class_weighting") == "balanced":
        log.warning(
            "data.sampler=weighted and model.class_weighting=balanced both correct "
            "class imbalance; together they over-weight the rare classes"
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment and return its metrics (also written to `<run dir>/metrics.json`)."""
    started = time.time()
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    datamodule.write_splits(run_dir / "splits.csv")
    datamodule.write_leakage_report(run_dir / "leakage.csv")
    _warn_double_balancing(cfg)
    model = build_model(cfg, datamodule)
    trainer = build_trainer(cfg)

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}

    if cfg.test:
        best = _best_checkpoint(trainer)
        if not best:
            log.warning(
                "no best checkpoint (fast_dev_run or no validation): testing current weights"
            )
        test_results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(test_results[0] if test_results else {})
    log_hparams(trainer.loggers, cfg, metrics)  # TensorBoard's HPARAMS view compares sweeps

    summary = {
        "metrics": metrics,
        "best_model_path": _best_checkpoint(trainer) or None,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.time() - started, 2),
        "classes": datamodule.class_names,
        "fold": cfg.data.get("fold"),
        "folds": cfg.data.get("folds") if cfg.data.get("fold") is not None else None,
        "eval_dir": None,
    }
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        # after metrics.json is safe on disk: a failing report must not lose the run's summary
        if cfg.test and cfg.get("evaluation") and len(datamodule.datasets["test"]):
            summary["eval_dir"] = str(evaluate_test_split(cfg, model, datamodule, trainer))
            (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        log.info("run directory: %s", run_dir)
        print(f"run directory: {run_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point; returns the optimized metric to Hydra sweepers (e.g. Optuna)."""
    quiet_third_party_warnings()
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    # status.json says running/finished/failed; in a sweep a failed trial does not stop the others
    with RunRecorder(Path(cfg.paths.output_dir), swallow=_in_sweep()) as run:
        metrics = train(cfg)
    if run.failed:
        return None  # the sweeper records the trial as failed (Optuna: TrialState.FAIL)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


if __name__ == "__main__":
    main()
