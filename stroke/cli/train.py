"""`stroke-train`: compose the config, build data, model and trainer, fit, then test.

The test split is scored with the run's best checkpoint, and `stroke-eval`'s report of it
is written into `<run>/eval/`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stroke.build import build_datamodule, build_model, build_trainer
from stroke.checkpoint import add_to_checkpoint
from stroke.cli.errors import command
from stroke.cli.positional import replaced_dicts
from stroke.config import CONFIG_PATH
from stroke.data.audit import SKIPPED_CSV
from stroke.evaluation.attention import ATTENTION_KEY
from stroke.evaluation.report import POOLER_FILE
from stroke.io import atomic_write_json
from stroke.runs.interrupt import GracefulStop
from stroke.runs.preflight import check_config, check_run
from stroke.runs.record import RunRecorder, log_hparams
from stroke.runs.resume import checkpoint_to_resume, note_slurm_run
from stroke.runs.rng_state import RngState
from stroke.runs.summary import run_summary
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
    result = model.write_evaluation(
        datamodule, eval_dir, instantiate(cfg.evaluation), device, context
    )
    log.info("evaluation report: %s", eval_dir / "report.md")
    pooler, best = eval_dir / POOLER_FILE, _best_checkpoint(trainer)
    # what the report chose on validation (e.g. a 3-D segmenter's smallest kept lesion)
    # travels with the weights, so stroke-predict applies it unchanged
    for key, value in ((result or {}).get("checkpoint_extras") or {}).items():
        if best:
            add_to_checkpoint(best, key, value)
            log.info("%s stored in %s", key, best)
    if pooler.is_file() and best:  # the report's attention pooling travels with the weights
        add_to_checkpoint(best, ATTENTION_KEY, torch.load(pooler, weights_only=True))
        log.info("attention pooling stored in %s", best)
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
    note_slurm_run(run_dir)  # a requeued attempt of this SLURM job continues here
    ckpt_path = checkpoint_to_resume(cfg.get("ckpt_path"), run_dir)
    resumed = check_config(cfg, ckpt_path)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    datamodule.write_splits(run_dir / "splits.csv")
    datamodule.write_leakage_report(run_dir / "leakage.csv")
    datamodule.write_left_out(run_dir / SKIPPED_CSV)
    if (write_plan := getattr(datamodule, "write_plan", None)) is not None:
        write_plan(run_dir / "plan.yaml")  # a planned datamodule's (3-D): readable, reusable
    _warn_double_balancing(cfg)
    model = build_model(cfg, datamodule)
    check_run(cfg, datamodule, model, resumed)
    trainer = build_trainer(cfg, extra_callbacks=[GracefulStop(), RngState()])

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
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

    summary = run_summary(
        cfg, trainer, model, datamodule, metrics, started, _best_checkpoint(trainer)
    )
    if trainer.is_global_zero:
        atomic_write_json(run_dir / "metrics.json", summary, sort_keys=True)
        # after metrics.json is safe on disk: a failing report must not lose the run's summary
        if cfg.test and cfg.get("evaluation") and len(datamodule.datasets["test"]):
            summary["eval_dir"] = str(evaluate_test_split(cfg, model, datamodule, trainer))
            atomic_write_json(run_dir / "metrics.json", summary, sort_keys=True)
        log.info("run directory: %s", run_dir)
        print(f"run directory: {run_dir}")
    return metrics


@command
@replaced_dicts("data.class_map", "model.loss.log_loss_weights")
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
