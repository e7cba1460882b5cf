"""Weight averaging for small data: Lightning's callbacks, chosen by `weight_averaging=`.

On a validation split of a few dozen patients the score swings from epoch to epoch, and
the epoch it picks as best is partly luck. An average of the weights over the last part of
training is steadier than any single epoch:

- `weight_averaging=ema`: Lightning's `EMAWeightAveraging` (`EMA` below), an exponential
  moving average updated after every optimizer step;
- `weight_averaging=swa`: `SWAFromEpoch` below, Lightning's `WeightAveraging` (an equal
  average, SWA) of the weights after every step from epoch `start` on, so the noisy early
  epochs stay out of it.

Both validate, checkpoint and test the averaged weights: Lightning swaps them in for every
validation epoch and writes them as the checkpoint's `state_dict` (the weights being
trained stay in `current_model_state`, for resuming), so `stroke-predict`, `stroke-eval`
and `stroke-serve` read the averaged model without knowing about averaging.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from stroke.errors import ConfigError


class _TestsTheAverage:
    """Testing or predicting from a checkpoint uses its `state_dict`, the averaged weights.

    Lightning's callback, still holding its average after `fit`, would load the weights
    being trained (`current_model_state`) into the model when `trainer.test` reads a
    checkpoint: the test would score the model that was not averaged. Only a resumed fit
    needs both states back.
    """

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class EMA(_TestsTheAverage, EMAWeightAveraging):
    """Lightning's exponential moving average of the weights (`weight_averaging=ema`)."""

    #: what the checkpoint's record says its weights are (stroke/tasks/base.py)
    averaging = "ema"


class SWAFromEpoch(_TestsTheAverage, WeightAveraging):
    """Stochastic weight averaging: the equal mean of the weights after every optimizer step
    from epoch `start` on (an epoch index, or a fraction of `max_epochs` when below 1).

    Until the first step of the average, validation and checkpoints use the weights being
    trained (Lightning's callback would show them a copy of the initial weights).
    """

    averaging = "swa"

    def __init__(self, start: float = 0.5, use_buffers: bool = True, **kwargs: Any) -> None:
        if isinstance(start, bool) or not isinstance(start, int | float) or start < 0:
            raise ConfigError(
                f"callbacks.weight_averaging.start must be an epoch index >= 0 or a fraction "
                f"of trainer.max_epochs in [0, 1), got {start!r}"
            )
        super().__init__(use_buffers=use_buffers, **kwargs)
        self.start = start
        self.start_epoch = 0
        self._trainer = None
        self._swapped = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer
        if self.start >= 1:
            self.start_epoch = int(self.start)
        else:
            max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
            self.start_epoch = int(self.start * max_epochs)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        epoch = self._trainer.current_epoch if self._trainer is not None else 0
        return step_idx is not None and epoch >= self.start_epoch

    def _averaged(self) -> bool:
        model = self._average_model
        return model is not None and int(model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._swapped = self._averaged()
        if self._swapped:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._swapped:
            super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self._averaged():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._averaged():
            super().on_train_end(trainer, pl_module)
