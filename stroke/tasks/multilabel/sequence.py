"""Stage 2: a series read in slice order, every slice's labels and the series' labels.

The input of each slice is what stage 1 (the slice network) made of it: its pooled
features and its logits. A small stack, as the RSNA 2019 winners used, reads the series:

    LayerNorm -> Linear (hidden) -> ReLU, dropout -> 1D convolution over neighbouring
    slices (residual) -> bidirectional GRU -> a slice head and a series head

Both heads add to stage 1's own logits (the slice's, and their max over the series for
the series head), so an untrained stage 2 starts from stage 1 and learns corrections:
what neighbours say about a slice near a lesion's end. Series of different lengths are
padded and masked: a series' outputs do not depend on the others in its batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from stroke.tasks.base import TaskModule, plain_values
from stroke.tasks.multilabel.metrics import label_weights, multilabel_scores


class SeriesSequenceNet(nn.Module):
    """(batch x slices x inputs, mask) -> (slice logits batch x slices x labels, series logits
    batch x labels). The last `num_labels` inputs of a slice are stage 1's logits."""

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        hidden: int = 64,
        conv: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.norm = nn.LayerNorm(in_features)
        self.project = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1) if conv else None
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.slice_head = nn.Linear(2 * hidden, num_labels)
        self.series_head = nn.Linear(2 * hidden, num_labels)
        # start as stage 1: the heads add nothing until trained
        for head in (self.slice_head, self.series_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = mask.unsqueeze(-1).to(x.dtype)
        stage1 = x[..., -self.num_labels :]
        h = self.project(self.norm(x)) * keep
        if self.conv is not None:
            # padded slices are zero, as the convolution's own padding at a series' ends
            h = h + torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2) * keep
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        slice_logits = stage1 + self.slice_head(out)
        hidden_max = out.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        stage1_max = stage1.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return slice_logits, stage1_max + self.series_head(hidden_max)


def pad_series(
    inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Series (slices x width each) as one zero-padded batch, its mask and padded targets."""
    longest = max(len(x) for x in inputs)
    batch = torch.zeros(len(inputs), longest, inputs[0].shape[1])
    mask = torch.zeros(len(inputs), longest, dtype=torch.bool)
    for i, x in enumerate(inputs):
        batch[i, : len(x)] = torch.as_tensor(x)
        mask[i, : len(x)] = True
    if targets is None:
        return batch, mask, None
    padded = torch.zeros(len(inputs), longest, targets[0].shape[1])
    for i, y in enumerate(targets):
        padded[i, : len(y)] = torch.as_tensor(y)
    return batch, mask, padded


class SeriesSequenceModel(TaskModule):
    """The LightningModule of stage 2: BCE on every slice and on each series (weighted as
    the RSNA log loss weighs labels); `val/weighted_log_loss` of the slices picks the epoch."""

    task = "multilabel_series"
    explains_one_class = False

    def __init__(
        self,
        in_features: int,
        class_names: Sequence[str],
        hidden: int = 64,
        conv: bool = True,
        dropout: float = 0.2,
        use_features: bool = True,
        series_loss_weight: float = 1.0,
        log_loss_weights: Mapping[str, float] | None = None,
        optimizer: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        class_names = list(class_names)
        self.save_hyperparameters(
            {
                "in_features": int(in_features),
                "class_names": class_names,
                "hidden": int(hidden),
                "conv": bool(conv),
                "dropout": float(dropout),
                "use_features": bool(use_features),
                "series_loss_weight": float(series_loss_weight),
                "log_loss_weights": dict(plain_values(log_loss_weights) or {}),
                "optimizer": plain_values(optimizer)
                or {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 1e-2},
                "scheduler": None,
            }
        )
        self.class_names = class_names
        weights = label_weights(class_names, log_loss_weights)
        self.register_buffer(
            "weights", torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
        )
        self.net = SeriesSequenceNet(in_features, len(class_names), hidden, conv, dropout)
        self.register_buffer("train_sums", torch.zeros(1), persistent=False)
        self.train_seen = 0
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self._val: list[tuple[np.ndarray, np.ndarray]] = []

    def forward(self, x, mask):
        return self.net(x, mask)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask, y = batch
        slice_logits, series_logits = self(x, mask)
        bce = nn.functional.binary_cross_entropy_with_logits
        per_slice = (bce(slice_logits, y, reduction="none") * self.weights).sum(-1)
        slice_loss = (per_slice * mask).sum() / mask.sum()
        series_y = y.masked_fill(~mask.unsqueeze(-1), 0).amax(dim=1)
        series_loss = (bce(series_logits, series_y, reduction="none") * self.weights).sum(-1)
        loss = slice_loss + self.hparams.series_loss_weight * series_loss.mean()
        return loss, torch.sigmoid(slice_logits[mask])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.train_sums += loss.detach() * len(batch[0])
        self.train_seen += len(batch[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        _, probs = self._loss(batch)
        x, mask, y = batch
        self._val.append((y[mask].cpu().numpy(), probs.detach().cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        targets = np.concatenate([t for t, _ in self._val])
        probs = np.concatenate([p for _, p in self._val])
        self._val.clear()
        weights = label_weights(self.class_names, self.hparams.log_loss_weights)
        loss = multilabel_scores(targets, probs, self.class_names, weights)["weighted_log_loss"]
        self.log("val/weighted_log_loss", loss, prog_bar=True)
        if not self.trainer.sanity_checking and loss < self.best_loss:
            self.best_loss = loss
            self.best_state = copy.deepcopy(self.net.state_dict())

    def restore_best(self) -> None:
        """The weights of the epoch with the best validation loss (kept in memory)."""
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
