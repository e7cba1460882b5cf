"""`stroke-eval ckpt_path=...`: the evaluation directory of a trained checkpoint.

The data are those the checkpoint was trained on (its run's `.hydra/config.yaml`, two
levels above `checkpoints/x.ckpt`), so the same seed gives the same split; `data.*`
overrides apply on top of them, and `data=<group>` (or a checkpoint without its run
directory) uses the data group of conf/eval.yaml instead.
"""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from stroke.checkpoint import run_config_of
from stroke.cli.errors import command
from stroke.cli.positional import replaced_dicts
from stroke.config import CONFIG_PATH
from stroke.parameters import EVAL, check
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.registry import task_of_checkpoints
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


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, object]:
    """The report of the checkpoint's task on the data it was trained on (or `data.*`)."""
    check(cfg, EVAL)
    paths = checkpoint_paths(cfg.ckpt_path)
    task = task_of_checkpoints(paths)
    overrides = _cli_overrides()
    return task.evaluate(cfg, paths, *data_config(cfg, overrides), overrides)


@command
@replaced_dicts("data.class_map")
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-eval`."""
    quiet_third_party_warnings()
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    main()
