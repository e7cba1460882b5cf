"""`hydra/launcher=parallel`: trials side by side, one per GPU (or several), CPU cores divided."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ParallelLauncher(Launcher):
    """Hydra's face of `stroke.sweep.launcher.ParallelTrialLauncher`.

    Selected by conf/hydra/launcher/parallel.yaml.
    """

    def __init__(self, **params: Any) -> None:
        from stroke.sweep.launcher import ParallelTrialLauncher

        self.launcher = ParallelTrialLauncher(**params)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        return self.launcher.launch(job_overrides, initial_job_idx)
