"""`hydra/sweeper=stroke_optuna`: an Optuna sweeper, resumable and shared between processes."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StrokeOptunaSweeper(Sweeper):
    """Hydra's face of `stroke.sweep.optuna.ResumableOptunaSweeper`.

    Selected by conf/hydra/sweeper/stroke_optuna.yaml.
    """

    def __init__(self, **params: Any) -> None:
        from stroke.sweep.optuna import ResumableOptunaSweeper

        self.sweeper = ResumableOptunaSweeper(**params)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
