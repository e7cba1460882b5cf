"""Several checkpoints as one classifier: the mean of their class probabilities.

The K checkpoints of a cross-validation sweep are K models of one recipe, each trained on
a different part of the data; averaging their probabilities is steadier than any one of
them. `ckpt_path=` of `stroke-predict` and `stroke-eval` takes a checkpoint, a list of
checkpoints (`ckpt_path=[a.ckpt,b.ckpt]`), a run directory (its best checkpoint) or a
multirun directory (the best checkpoint of every run in it). The ensemble is a plain
`nn.Module` whose output, put through the softmax as every caller does, is the mean of
the members' probabilities, so it goes through the one prediction path
(stroke/inference/predictor.py) and the evaluation report unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stroke.errors import CheckpointError, ConfigError
from stroke.evaluation.attention import pooled_features
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.classification.checkpoint import LoadedClassifier, load_classifier

#: a probability below this is taken as this before the log (softmax(log p) = p again)
_TINY = 1e-12


class ProbabilityMean(nn.Module):
    """The members' softmax probabilities averaged; returned as logits (their log)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one checkpoint")
        self.members = nn.ModuleList(members)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float().softmax(dim=1) for m in self.members]).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probabilities(x).clamp_min(_TINY).log()


class FlipAverage(nn.Module):
    """Flip test-time augmentation as a network: the mean of the probabilities of an image
    and its left-right mirror, returned as logits (their log), like `ProbabilityMean`.

    The same average as `stroke-predict tta=true` (stroke/inference/predictor.py); the
    training module uses it to validate and test with `model.tta=true`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.net(torch.cat([x, x.flip(-1)])).float().softmax(dim=1)
        n = len(x)
        return ((both[:n] + both[n:]) / 2).clamp_min(_TINY).log()

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the pooled penultimate features of the image and its mirror: what
        attention pooling reads under flip TTA (one feature space, both views)."""
        both = pooled_features(self.net, torch.cat([x, x.flip(-1)]))
        n = len(x)
        return (both[:n] + both[n:]) / 2


def load_ensemble(ckpt_path) -> LoadedClassifier:
    """One checkpoint as `load_classifier` does; several as one averaged classifier.

    The members must agree on classes, channels and preprocessing: an ensemble reads each
    input once, the same way for every member.
    """
    paths = checkpoint_paths(ckpt_path)
    if len(paths) == 1:
        return load_classifier(paths[0])
    members = [load_classifier(p) for p in paths]
    first = members[0]
    for other in members[1:]:
        same_prep = (first.preprocessing and first.preprocessing.record()) == (
            other.preprocessing and other.preprocessing.record()
        )
        if other.class_names != first.class_names or other.input_channels != first.input_channels:
            raise CheckpointError(
                f"ensemble members disagree: {first.path} has classes {first.class_names} "
                f"({first.input_channels} input channels), {other.path} has {other.class_names} "
                f"({other.input_channels})"
            )
        if not same_prep:
            raise CheckpointError(
                f"ensemble members read images differently: {first.path} with "
                f"{first.preprocessing}, {other.path} with {other.preprocessing}"
            )
    names = sorted({str(m.backbone.get("name")) for m in members})
    return LoadedClassifier(
        net=ProbabilityMean([m.net for m in members]).eval(),
        class_names=first.class_names,
        input_channels=first.input_channels,
        preprocessing=first.preprocessing,
        backbone={"name": f"mean of {len(members)} x {'+'.join(names)}"},
        path=first.path,
        members=tuple(m.path for m in members),
        tta=any(m.tta for m in members),
    )
