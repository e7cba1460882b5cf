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

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import ListConfig, OmegaConf
from torch import nn

from stroke.errors import CheckpointError, ConfigError
from stroke.inference.checkpoint import LoadedClassifier, load_classifier

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


def _as_list(ckpt_path) -> list[str]:
    if isinstance(ckpt_path, ListConfig):
        ckpt_path = OmegaConf.to_object(ckpt_path)
    if isinstance(ckpt_path, str | Path):
        return [str(ckpt_path)]
    if isinstance(ckpt_path, list | tuple) and ckpt_path:
        return [str(p) for p in ckpt_path]
    raise ConfigError(
        f"ckpt_path={ckpt_path!r}: expected a checkpoint, a list of checkpoints, a run "
        "directory or a multirun directory"
    )


def best_checkpoint_of_run(run_dir: Path) -> Path:
    """The checkpoint a finished run tested (metrics.json's best_model_path), else last.ckpt."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    best = summary.get("best_model_path") or ""
    candidates = [Path(best), run_dir / "checkpoints" / Path(best).name] if best else []
    candidates.append(run_dir / "checkpoints" / "last.ckpt")
    for path in candidates:
        if path.is_file():
            return path
    raise CheckpointError(
        f"run {run_dir} has no checkpoint left (looked for {', '.join(map(str, candidates))})"
    )


def _runs_of(directory: Path) -> list[Path]:
    """The run directories a directory names: itself, or the runs of a multirun directory."""
    if (directory / "metrics.json").is_file():
        return [directory]
    runs = [p.parent for p in directory.glob("*/metrics.json")]
    # job folders 0, 1, ..., 10 in numeric order
    return sorted(
        runs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)
    )


def checkpoint_paths(ckpt_path) -> list[Path]:
    """Every checkpoint `ckpt_path` names (see the module docstring), in a stable order."""
    from stroke.runs.cross_validation import read_fold_run

    paths: list[Path] = []
    for item in _as_list(ckpt_path):
        path = Path(item).expanduser()
        if path.is_file():
            paths.append(path)
            continue
        if not path.is_dir():
            raise CheckpointError(
                f"ckpt_path={item!r} does not exist (expected a .ckpt file, a run directory "
                "or a multirun directory)"
            )
        runs = _runs_of(path)
        if not runs:
            raise CheckpointError(
                f"ckpt_path={item!r} is a directory without finished runs (no metrics.json "
                "in it or in its sub-folders)"
            )
        groups = {read_fold_run(run).group for run in runs}
        if len(groups) > 1:
            raise ConfigError(
                f"ckpt_path={item!r} holds runs of {len(groups)} different settings "
                f"({sorted(' '.join(g) or '(none)' for g in groups)}); an ensemble averages "
                "one recipe: name its checkpoints as a list"
            )
        paths.extend(best_checkpoint_of_run(run) for run in runs)
    return paths


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
        if other.class_names != first.class_names or other.in_chans != first.in_chans:
            raise CheckpointError(
                f"ensemble members disagree: {first.path} has classes {first.class_names} "
                f"(in_chans={first.in_chans}), {other.path} has {other.class_names} "
                f"(in_chans={other.in_chans})"
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
        in_chans=first.in_chans,
        preprocessing=first.preprocessing,
        backbone={"name": f"mean of {len(members)} x {'+'.join(names)}"},
        path=first.path,
        members=tuple(m.path for m in members),
    )
