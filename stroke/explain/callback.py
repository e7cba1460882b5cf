"""Log Grad-CAM overlays of a few fixed validation images to TensorBoard each validation epoch."""

from __future__ import annotations

import logging

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from stroke.explain.gradcam import grad_cams, overlay
from stroke.runs.tensorboard import image_epoch_loggers, log_figure

log = logging.getLogger(__name__)


class GradCamCallback(Callback):
    """Watch where the model looks while it learns: the same images every epoch.

    Images are picked once, round-robin over the classes of the validation split, so
    lesion classes are shown too. The heat map is for the predicted class. Runs on the
    main process only, and only when a TensorBoard logger is attached.
    """

    def __init__(
        self,
        num_images: int = 4,
        target_layer: str | None = None,
        every_n_epochs: int = 1,
        tag: str = "val/gradcam",
    ) -> None:
        self.num_images = num_images
        self.target_layer = target_layer
        self.every_n_epochs = max(1, every_n_epochs)
        self.tag = tag
        self._images: torch.Tensor | None = None
        self._labels: list[int] = []
        self._display: list[np.ndarray] = []

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = image_epoch_loggers(trainer, self.every_n_epochs, self.num_images)
        net = getattr(pl_module, "net", None)
        if not getattr(pl_module, "explains_one_class", True):  # e.g. multi-label outputs
            return
        if not loggers or net is None or not self._pick_images(trainer):
            return
        images = self._images.to(pl_module.device)
        with torch.no_grad():
            probs = net(images).float().softmax(dim=1).cpu()
        predicted = probs.argmax(dim=1).tolist()
        cams = grad_cams(net, images, predicted, self.target_layer)
        figure = self._figure(cams, predicted, probs, getattr(pl_module, "class_names", None))
        log_figure(loggers, self.tag, figure, trainer.current_epoch)

    def _pick_images(self, trainer: Trainer) -> bool:
        """Choose and keep the images once (round-robin over classes)."""
        if self._images is not None:
            return True
        datamodule = getattr(trainer, "datamodule", None)
        datasets = getattr(datamodule, "datasets", {}) or {}
        dataset = datasets.get("val")
        if dataset is None:
            dataloader = trainer.val_dataloaders
            dataset = getattr(dataloader, "dataset", None)
        if dataset is None or len(dataset) == 0:
            return False
        targets = list(getattr(dataset, "targets", range(len(dataset))))
        by_class: dict[int, list[int]] = {}
        for index, target in enumerate(targets):
            by_class.setdefault(int(target), []).append(index)
        chosen: list[int] = []
        queues = [list(v) for _, v in sorted(by_class.items())]
        while len(chosen) < min(self.num_images, len(dataset)) and any(queues):
            for queue in queues:
                if queue and len(chosen) < self.num_images:
                    chosen.append(queue.pop(0))
        items = [dataset[i] for i in chosen]
        self._images = torch.stack([torch.as_tensor(image) for image, _ in items]).clone()
        self._labels = [int(label) for _, label in items]
        preprocessing = getattr(dataset, "preprocessing", None)
        self._display = [_displayed(image, preprocessing) for image in self._images]
        return True

    def _figure(self, cams: np.ndarray, predicted: list[int], probs: torch.Tensor, class_names):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(class_names) if class_names else [str(i) for i in range(probs.shape[1])]
        n = len(cams)
        fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
        for i, ax in enumerate(axes[0]):
            ax.imshow(overlay(self._display[i], cams[i]))
            ax.set_title(
                f"true {names[self._labels[i]]}\npred {names[predicted[i]]} "
                f"{float(probs[i, predicted[i]]):.2f}",
                fontsize=8,
            )
            ax.axis("off")
        fig.tight_layout()
        return fig


def _displayed(tensor: torch.Tensor, preprocessing) -> np.ndarray:
    """The input as the uint8 image it came from (min-max stretched without a preprocessing)."""
    if preprocessing is not None:
        return preprocessing.to_display(tensor)
    channel = tensor[0].numpy()
    low, high = float(channel.min()), float(channel.max())
    return ((channel - low) / (high - low + 1e-8) * 255).astype(np.uint8)
