"""TensorBoard, each validation epoch: slices with their true and predicted lesion outlines."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from stroke.runs.tensorboard import image_epoch_loggers, log_figure

#: Validation slices looked at when picking the ones to show.
_SCANNED = 1000


class LesionOutlineCallback(Callback):
    """Watch the masks take shape: the same validation slices every epoch.

    Slices are picked once from the validation split, round-robin over the lesion
    classes they hold (then slices without a lesion), so each class is shown. Runs on the
    main process only, and only when a TensorBoard logger is attached.
    """

    def __init__(
        self, num_images: int = 8, every_n_epochs: int = 1, tag: str = "val/lesion_outlines"
    ) -> None:
        self.num_images = num_images
        self.every_n_epochs = max(1, every_n_epochs)
        self.tag = tag
        self._images: torch.Tensor | None = None
        self._masks: list[np.ndarray] = []
        self._display: list[np.ndarray] = []

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = image_epoch_loggers(trainer, self.every_n_epochs, self.num_images)
        if not loggers or not self._pick_images(trainer):
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            logits, _ = pl_module(self._images.to(pl_module.device))
        pl_module.train(was_training)
        predicted = list(logits.argmax(dim=1).cpu().numpy())
        # imported on use: matplotlib only when a figure is drawn
        from stroke.evaluation.plots import lesion_outline_figure

        names = pl_module.channel_names
        titles = [
            _title(true, pred, names) for true, pred in zip(self._masks, predicted, strict=True)
        ]
        figure = lesion_outline_figure(
            self._display, self._masks, predicted, titles, f"epoch {trainer.current_epoch}"
        )
        log_figure(loggers, self.tag, figure, trainer.current_epoch)

    def _pick_images(self, trainer: Trainer) -> bool:
        """Choose and keep the slices once (round-robin over the lesion classes they hold)."""
        if self._images is not None:
            return True
        dataset = trainer.datamodule.datasets.get("val") if trainer.datamodule else None
        if dataset is None or len(dataset) == 0:
            return False
        by_class: dict[int, list[int]] = {}
        # the first slices are enough to find each class: a large split is not read whole
        masks = [dataset.image_and_mask(i) for i in range(min(len(dataset), _SCANNED))]
        for index, (_, mask) in enumerate(masks):
            present = np.unique(mask)
            by_class.setdefault(int(present.max()), []).append(index)
        queues = [by_class[k] for k in sorted(by_class, reverse=True) if k > 0]
        queues.append(by_class.get(0, []))
        chosen: list[int] = []
        while len(chosen) < min(self.num_images, len(dataset)) and any(queues):
            for queue in queues:
                if queue and len(chosen) < self.num_images:
                    chosen.append(queue.pop(0))
        self._display = [masks[i][0] for i in chosen]
        self._masks = [masks[i][1] for i in chosen]
        self._images = torch.stack(
            [dataset.preprocessing.to_tensor(image) for image in self._display]
        )
        return True


def _title(true: np.ndarray, pred: np.ndarray, names: list[str]) -> str:
    """`infarct, Dice 0.84` (or `no lesion, 12 px predicted`)."""
    lesion = true > 0
    if not lesion.any():
        return f"no lesion, {int((pred > 0).sum())} px predicted"
    classes = ", ".join(names[k] for k in np.unique(true) if k > 0)
    overlap = np.logical_and(lesion, pred == true).sum()
    dice = 2 * overlap / (lesion.sum() + (pred > 0).sum())
    return f"{classes}, Dice {dice:.2f}"
