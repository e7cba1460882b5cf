"""`stroke-predict ckpt_path=... inputs=<file|folder|glob>`: what the checkpoint's task writes
for each input: a CSV of class probabilities for a classifier, lesion areas with a mask and
an overlay per image for a segmenter (stroke/tasks/<task>/predict.py).

Each input gets a row; a file that cannot be read gets its error in the `error` column and
the others carry on. The exit status is 3 (a data error) when any file failed.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError, DatasetError
from stroke.inference.onnx_export import read_onnx_metadata
from stroke.parameters import PREDICT, check
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.registry import TaskParts, get_task, task_of_checkpoints
from stroke.warnings_filter import quiet_third_party_warnings

#: the task of an ONNX file exported before its metadata named one
ONNX_DEFAULT_TASK = "classification"


def prediction_task(cfg: DictConfig) -> TaskParts:
    """The checkpoint's task (all members of an ensemble agree), else the ONNX file's."""
    if cfg.ckpt_path:
        return task_of_checkpoints(checkpoint_paths(cfg.ckpt_path))
    return get_task(str((read_onnx_metadata(cfg.onnx_path) or {}).get("task", ONNX_DEFAULT_TASK)))


def run_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every input and write what the task writes; returns (csv, files, failures)."""
    if not cfg.ckpt_path and not cfg.onnx_path:
        raise ConfigError("give ckpt_path= (a stroke-train checkpoint) or onnx_path=")
    check(cfg, PREDICT)
    return prediction_task(cfg).predict(cfg)


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-predict`; exits with status 3 when any input failed."""
    quiet_third_party_warnings()
    output_csv, total, failures = run_prediction(cfg)
    print(f"predictions: {output_csv} ({total - failures} of {total} files predicted)")
    if failures:
        raise DatasetError(
            f"{failures} of {total} files could not be read; see the error column of {output_csv}"
        )


if __name__ == "__main__":
    main()
