"""The series model as a task (`multilabel_series`): stage 2 trained on out-of-fold
features, and one checkpoint holding both stages.

The checkpoint (`<run>/checkpoints/series.ckpt`, written by `stroke-series`) is read like
any other with weights_only=True: `state_dict` and `hyper_parameters` are stage 2's, the
`stroke` record names the task and the preprocessing, and `members` holds every fold's
stage-1 checkpoint (its weights, hyper-parameters and record). A series is predicted by
each fold model (features and logits of its slices), read by stage 2, and stage 2's
probabilities are averaged over the fold models, as the RSNA 2019 winners averaged theirs.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from stroke import __version__
from stroke.checkpoint import CheckpointRecord, checkpoint_record, read_checkpoint
from stroke.checkpoint.format import RECORD_KEY
from stroke.data.preprocessing import Preprocessing
from stroke.errors import CheckpointError, ConfigError
from stroke.tasks.multilabel.checkpoint import LoadedMultiLabel, load_multilabel
from stroke.tasks.multilabel.features import FoldModel, SeriesFeatures, slice_features
from stroke.tasks.multilabel.metrics import enforce_any
from stroke.tasks.multilabel.sequence import SeriesSequenceModel, SeriesSequenceNet, pad_series

TASK_NAME = SeriesSequenceModel.task
#: the stage-1 checkpoint entries a member keeps (not the optimizer and loop states)
MEMBER_KEYS = ("state_dict", "hyper_parameters", RECORD_KEY)
#: stroke-series' `series.*` keys that are SeriesSequenceModel's arguments
MODEL_KEYS = ("hidden", "conv", "dropout", "use_features", "series_loss_weight")


def split_by_patient(
    series: Sequence[SeriesFeatures], val_fraction: float, seed: int
) -> tuple[list[SeriesFeatures], list[SeriesFeatures]]:
    """(train, val) series, no patient in both."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"series.val_fraction must be in (0, 1), got {val_fraction!r}")
    patients = sorted({s.patient_id for s in series})
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(patients)[: max(1, round(len(patients) * val_fraction))])
    return [s for s in series if s.patient_id not in held], [
        s for s in series if s.patient_id in held
    ]


def _loader(series: Sequence[SeriesFeatures], use_features: bool, batch_size: int, shuffle: bool):
    items = [(s.inputs(use_features), s.targets) for s in series]
    return DataLoader(
        items, batch_size=batch_size, shuffle=shuffle,
        collate_fn=lambda batch: pad_series([x for x, _ in batch], [y for _, y in batch]),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def fit_series_model(
    train: Sequence[SeriesFeatures],
    val: Sequence[SeriesFeatures],
    class_names: Sequence[str],
    settings: dict[str, Any],
    log_loss_weights: dict[str, float] | None = None,
) -> SeriesSequenceModel:
    """Stage 2 fitted on `train`, the epoch of the best validation weighted log loss kept."""
    if not train or not val:
        raise ConfigError(
            f"stage 2 needs training and validation series, got {len(train)} and {len(val)}"
        )
    L.seed_everything(int(settings.get("seed", 0)), workers=True, verbose=False)
    use_features = bool(settings.get("use_features", True))
    model = SeriesSequenceModel(
        in_features=train[0].inputs(use_features).shape[1],
        class_names=class_names,
        log_loss_weights=log_loss_weights,
        optimizer={"_target_": "torch.optim.AdamW", "lr": float(settings.get("lr", 1e-3)),
                   "weight_decay": float(settings.get("weight_decay", 1e-2))},
        **{k: settings[k] for k in MODEL_KEYS if k in settings},
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=int(settings.get("epochs", 40)), accelerator="cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=bool(settings.get("progress", False)), num_sanity_val_steps=0,
    )  # fmt: skip
    batch_size = int(settings.get("batch_size", 8))
    trainer.fit(model, _loader(train, use_features, batch_size, True),
                _loader(val, use_features, batch_size, False))  # fmt: skip
    model.restore_best()
    return model.eval()


def series_checkpoint(
    model: SeriesSequenceModel, folds: Sequence[FoldModel], provenance: dict[str, Any]
) -> dict[str, Any]:
    """Both stages as one checkpoint (plain values and tensors: weights_only loads it)."""
    members = []
    for fold in folds:
        stage1 = read_checkpoint(fold.model.path)
        members.append({k: stage1[k] for k in MEMBER_KEYS})
    first = folds[0].model
    record = CheckpointRecord(
        task=TASK_NAME,
        class_names=list(model.class_names),
        preprocessing=dict(checkpoint_record(members[0]).preprocessing),
        data={"settings": dict(first.settings), "folds": [f.fold for f in folds]},
        provenance={
            **provenance,
            "stage1_runs": [str(f.run_dir) for f in folds],
            "stroke_version": __version__,
            "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )
    return {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "hyper_parameters": dict(model.hparams),
        "members": members,
        RECORD_KEY: record.to_dict(),
    }


@dataclass
class LoadedSeriesModel:
    """Stage 2 and the fold models it reads, in eval mode on the CPU."""

    sequence: SeriesSequenceNet
    members: list[LoadedMultiLabel]
    class_names: list[str]
    preprocessing: Preprocessing | None
    settings: dict[str, Any]
    use_features: bool
    path: Path

    @property
    def net(self) -> SeriesSequenceNet:
        return self.sequence

    @property
    def input_channels(self) -> int:
        return self.members[0].input_channels

    @property
    def description(self) -> str:
        return f"{len(self.members)} x {self.members[0].description} + series GRU"

    def metadata(self) -> dict[str, object]:
        raise ConfigError(f"{self.path} is a series model (two stages): it is not exported to ONNX")

    def member_series(self, member: LoadedMultiLabel, images: torch.Tensor, device,
                      batch_size: int = 32) -> SeriesFeatures:  # fmt: skip
        """One fold model's features and logits of a series' slices (in slice order)."""
        net = member.net.eval().to(device)
        features, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                f, z = slice_features(net, images[start : start + batch_size].to(device))
                features.append(f.float().cpu())
                logits.append(z.float().cpu())
        features, logits = torch.cat(features).numpy(), torch.cat(logits).numpy()
        return SeriesFeatures("", "", [], features, logits, np.zeros_like(logits))

    def read(self, per_member: Sequence[Sequence[SeriesFeatures]], device="cpu"):
        """Stage 2 over each member's features of the same series, averaged over members:
        (slice probabilities per series, series probabilities per series)."""
        slices = [np.zeros((len(s.logits), len(self.class_names))) for s in per_member[0]]
        series = np.zeros((len(per_member[0]), len(self.class_names)))
        net = self.sequence.eval().to(device)
        for items in per_member:
            for start in range(0, len(items), 16):
                chunk = items[start : start + 16]
                x, mask, _ = pad_series([s.inputs(self.use_features) for s in chunk])
                with torch.no_grad():
                    slice_logits, series_logits = net(x.to(device), mask.to(device))
                slice_p = torch.sigmoid(slice_logits).cpu().numpy()
                series[start : start + len(chunk)] += torch.sigmoid(series_logits).cpu().numpy()
                for j, s in enumerate(chunk):
                    slices[start + j] += slice_p[j, : len(s.logits)]
        n = len(per_member)
        slices = [self._enforced(p / n) for p in slices]
        return slices, self._enforced(series / n)

    def stage1_probs(self, per_member: Sequence[Sequence[SeriesFeatures]]) -> list[np.ndarray]:
        """The fold models' mean slice probabilities of each series (stage 1 alone)."""
        probs = [np.mean([1 / (1 + np.exp(-m[i].logits)) for m in per_member], axis=0)
                 for i in range(len(per_member[0]))]  # fmt: skip
        return [self._enforced(p) for p in probs]

    def _enforced(self, probs: np.ndarray) -> np.ndarray:
        if not self.settings.get("enforce_any"):
            return probs
        return enforce_any(probs, self.class_names, self.settings.get("any_label"))


def load_series(path: str | Path, checkpoint: dict | None = None) -> LoadedSeriesModel:
    """Both stages of a `stroke-series` checkpoint, in eval mode on the CPU."""
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    record = checkpoint_record(checkpoint)
    if record.task != TASK_NAME or not checkpoint.get("members"):
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is a {record.task} checkpoint, not a series model"
        )
    hparams = checkpoint["hyper_parameters"]
    sequence = SeriesSequenceNet(
        hparams["in_features"], len(hparams["class_names"]), hparams["hidden"],
        hparams["conv"], hparams["dropout"],
    )  # fmt: skip
    sequence.load_state_dict(
        {
            k.removeprefix("net."): v
            for k, v in checkpoint["state_dict"].items()
            if k.startswith("net.")
        }
    )
    members = [load_multilabel(path, dict(m)) for m in checkpoint["members"]]
    return LoadedSeriesModel(
        sequence=sequence.eval(),
        members=members,
        class_names=list(hparams["class_names"]),
        preprocessing=members[0].preprocessing,
        settings=dict(record.data.get("settings") or members[0].settings),
        use_features=bool(hparams.get("use_features", True)),
        path=path,
    )
