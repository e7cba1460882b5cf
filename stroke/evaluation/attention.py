"""Learned patient-level aggregation: attention pooling over a patient's slice features.

`max` and `mean` (stroke/evaluation/patient.py) combine slice probabilities by a fixed
rule. `attention` learns how: the trained slice model's features (its pooled
penultimate layer, frozen) of every slice of a patient go through gated attention
(Ilse et al., 2018, "Attention-based deep multiple instance learning"): each slice gets a
weight from its features, the patient is the weighted mean of its slices' features, and a
linear layer classifies it. The pooling is fitted on the training split's patients (the
slice model's own training data; nothing of val or test), then scores val and test
patients, which the report treats like the other aggregations
(`evaluation.patient_aggregations=[max,mean,attention]`).

The fitted pooling is kept: stroke-train stores it in the run's best checkpoint
(`ATTENTION_KEY`, tensors and plain values, weights_only-loadable) and stroke-eval scores
with the stored one instead of fitting a new one on whatever data it is given.

The patient's true label is the one patient.py gives (any non-negative slice: the most
frequent non-negative label), so the three rows of the report are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from stroke.evaluation.patient import PatientPredictions, aggregate_by_patient


class GatedAttentionPooling(nn.Module):
    """Bag of slice features (N x D) -> class logits (K) and slice weights (N)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.value = nn.Linear(in_features, hidden)
        self.gate = nn.Linear(in_features, hidden)
        self.score = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(in_features, num_classes)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.value(bag)) * torch.sigmoid(self.gate(bag)))
        weights = torch.softmax(scores.squeeze(-1), dim=0)
        return self.classifier(weights @ bag), weights


#: where a checkpoint keeps its fitted attention pooling
ATTENTION_KEY = "attention_pooler"


@dataclass
class AttentionPooler:
    """A fitted gated-attention pooling with the feature standardisation it was fitted on."""

    model: GatedAttentionPooling
    mean: np.ndarray
    std: np.ndarray
    #: where it was fitted (for the report)
    fitted_on: str = ""

    def to_state(self) -> dict[str, object]:
        """Tensors and plain values, for a checkpoint (loadable with weights_only=True)."""
        return {
            "state_dict": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "in_features": int(self.model.value.in_features),
            "num_classes": int(self.model.classifier.out_features),
            "hidden": int(self.model.value.out_features),
            "mean": torch.from_numpy(np.asarray(self.mean, dtype=np.float32)),
            "std": torch.from_numpy(np.asarray(self.std, dtype=np.float32)),
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> AttentionPooler:
        model = GatedAttentionPooling(
            int(state["in_features"]), int(state["num_classes"]), int(state["hidden"])
        )
        model.load_state_dict(state["state_dict"])
        return cls(
            model.eval(),
            np.asarray(state["mean"], dtype=np.float32),
            np.asarray(state["std"], dtype=np.float32),
            str(state.get("fitted_on", "")),
        )


def has_pooled_features(net: nn.Module) -> bool:
    """Whether `net` has one feature space to pool (a backbone, or flip TTA over one); an
    ensemble's mean has none."""
    return hasattr(net, "pooled_features") or hasattr(net, "forward_head")


def pooled_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled penultimate features (N x D) of a batch: timm's `forward_head(pre_logits=
    True)` (the custom CNNs have it too), or the network's own `pooled_features`."""
    if hasattr(net, "pooled_features"):
        return net.pooled_features(x).flatten(1)
    return net.forward_head(net.forward_features(x), pre_logits=True).flatten(1)


@torch.no_grad()
def slice_features(
    net: nn.Module, dataset, device: str | torch.device = "cpu", batch_size: int = 64
) -> np.ndarray:
    """The pooled penultimate features (N x D) of a dataset's images, in its order, no
    augmentation (timm's `forward_head(pre_logits=True)`, which the custom CNNs have too)."""
    transform, dataset.transform = dataset.transform, None
    was_training = net.training
    net.eval().to(device)
    try:
        chunks = []
        for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            chunks.append(pooled_features(net, images.to(device)).float().cpu())
    finally:
        dataset.transform = transform
        net.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32)


def _bags(patient_ids: Sequence[str], features: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    ids = sorted(set(patient_ids))
    rows: dict[str, list[int]] = {p: [] for p in ids}
    for i, p in enumerate(patient_ids):
        rows[p].append(i)
    return ids, [features[rows[p]] for p in ids]


def fit_attention(
    features: np.ndarray,
    patient_ids: Sequence[str],
    targets: np.ndarray,
    num_classes: int,
    epochs: int = 60,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[GatedAttentionPooling, np.ndarray, np.ndarray]:
    """Fit the pooling on one split's patients; returns it with the features' mean and std
    (the standardisation it was fitted on)."""
    torch.manual_seed(seed)
    mean = features.mean(axis=0)
    std = features.std(axis=0) + 1e-6
    labels = aggregate_by_patient(patient_ids, targets, np.eye(num_classes)[targets], "max")
    ids, bags = _bags(patient_ids, (features - mean) / std)
    assert ids == list(labels.patient_ids)
    model = GatedAttentionPooling(features.shape[1], num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    counts = np.bincount(labels.targets, minlength=num_classes).astype(np.float32)
    weight = torch.tensor(counts.sum() / (num_classes * np.maximum(counts, 1)))
    criterion = nn.CrossEntropyLoss(weight=weight)
    tensors = [torch.from_numpy(b.astype(np.float32)) for b in bags]
    targets_t = torch.from_numpy(labels.targets)
    generator = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        for i in generator.permutation(len(tensors)):
            logits, _ = model(tensors[i])
            loss = criterion(logits[None], targets_t[i : i + 1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), mean, std


@torch.no_grad()
def attention_by_patient(
    model: GatedAttentionPooling,
    mean: np.ndarray,
    std: np.ndarray,
    features: np.ndarray,
    patient_ids: Sequence[str],
    targets: np.ndarray,
) -> PatientPredictions:
    """Per-patient probabilities from the fitted pooling, labels as patient.py gives them."""
    num_classes = model.classifier.out_features
    labels = aggregate_by_patient(patient_ids, targets, np.eye(num_classes)[targets], "max")
    ids, bags = _bags(patient_ids, (features - mean) / std)
    probs = np.stack(
        [model(torch.from_numpy(b.astype(np.float32)))[0].softmax(-1).numpy() for b in bags]
    )
    return PatientPredictions(ids, labels.targets, probs.astype(float), labels.n_slices)


def learned_patient_predictions(
    net: nn.Module,
    datamodule,
    val,
    test,
    device,
    seed: int = 0,
    pooler: AttentionPooler | None = None,
) -> tuple[dict[str, PatientPredictions | None], AttentionPooler]:
    """Patient predictions of val (None when empty) and test by attention pooling: `pooler`
    when given (a stored one), else one fitted on the training split's slice features."""
    if pooler is None:
        train_set = datamodule.datasets["train"]
        train_targets = np.asarray(train_set.targets, dtype=np.int64)
        train_ids = [s.patient_id for s in train_set.samples]
        features = slice_features(net, train_set, device)
        model, mean, std = fit_attention(
            features, train_ids, train_targets, datamodule.num_classes, seed=seed
        )
        pooler = AttentionPooler(model, mean, std, f"the training split ({len(train_ids)} images)")
    model, mean, std = pooler.model, pooler.mean, pooler.std
    out: dict[str, PatientPredictions | None] = {"val": None}
    for name, split in (("val", val), ("test", test)):
        if split is None or not len(split):
            continue
        feats = slice_features(net, datamodule.datasets[name], device)
        out[name] = attention_by_patient(
            model, mean, std, feats, split.patient_ids, np.asarray(split.targets)
        )
    return out, pooler
