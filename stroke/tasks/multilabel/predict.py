"""`stroke-predict` on a multi-label checkpoint (or a fold ensemble of them): a row per
slice and a row per series.

Files are grouped into series by their DICOM SeriesInstanceUID and ordered along the slice
normal (other files are each their own series), so context slices are the true neighbours
and a series row holds the max of its slices' probabilities ("this series shows a subdural
hemorrhage"). A label is decided positive at the threshold chosen on validation by the
run's report (`<run>/eval/metrics.json`), else at `threshold=` (default 0.5). A file that
cannot be read gets its error in the `error` column; the others carry on.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import torch
from omegaconf import DictConfig

from stroke.data.context import stack_channels
from stroke.data.dicom_pixels import slice_position
from stroke.data.readers import format_of
from stroke.errors import ConfigError
from stroke.hardware import resolve_device
from stroke.inference.predictor import describe_error, resolve_inputs
from stroke.io import atomic_writer
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.multilabel.checkpoint import LoadedMultiLabel, load_multilabel
from stroke.tasks.multilabel.decision import (
    DEFAULT_THRESHOLD,
    label_set,
    run_report,
    validation_thresholds,
)
from stroke.tasks.multilabel.metrics import enforce_any

log = logging.getLogger("stroke.predict")


@dataclass
class SliceFile:
    """One input file, the series it belongs to and its place there."""

    path: Path
    series_id: str
    patient_id: str = ""
    position: float | None = None
    probs: np.ndarray | None = None
    error: str = ""


@dataclass
class Ensemble:
    """One or more multi-label models with the same labels and preprocessing."""

    members: list[LoadedMultiLabel] = field(default_factory=list)

    @property
    def first(self) -> LoadedMultiLabel:
        return self.members[0]

    def __call__(self, batch: torch.Tensor, device) -> np.ndarray:
        with torch.no_grad():
            probs = [torch.sigmoid(m.net.to(device)(batch.to(device)).float()).cpu().numpy()
                     for m in self.members]  # fmt: skip
        return np.mean(probs, axis=0)


def load_members(paths: Sequence[Path]) -> Ensemble:
    """The checkpoints as one model; they must agree on labels and preprocessing."""
    members = [load_multilabel(p) for p in paths]
    first = members[0]
    for other in members[1:]:
        if other.class_names != first.class_names or other.preprocessing != first.preprocessing:
            raise ConfigError(
                f"ckpt_path= mixes models: {first.path} predicts {first.class_names} with "
                f"its preprocessing, {other.path} {other.class_names} (or other preprocessing)"
            )
    return Ensemble(members)


def group_series(paths: Sequence[Path]) -> list[list[SliceFile]]:
    """The files as series in slice order: DICOM by SeriesInstanceUID along the normal."""
    series: dict[str, list[SliceFile]] = {}
    for path in paths:
        item = SliceFile(path, series_id=str(path))
        try:
            if format_of(path).name == "dicom":
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                item.series_id = str(ds.get("SeriesInstanceUID") or path)
                item.patient_id = str(ds.get("PatientID") or "")
                item.position = slice_position(ds)
        except Exception as err:  # an unreadable header: the file's own row says why
            item.error = describe_error(err)
        series.setdefault(item.series_id, []).append(item)
    for members in series.values():
        if all(m.position is not None for m in members):
            members.sort(key=lambda m: m.position)
    return list(series.values())


def context_inputs(images: Sequence[np.ndarray], preprocessing) -> list[np.ndarray]:
    """The normalised inputs of a series' readable slices (letterboxed uint8, in slice order),
    each with its `context_slices` neighbours, the edge slice repeated at the ends."""
    k, last = preprocessing.context_slices, len(images) - 1
    inputs = []
    for position, image in enumerate(images):
        if k:
            neighbours = [images[min(max(position + o, 0), last)] for o in range(-k, k + 1)]
            image = stack_channels(neighbours)
        inputs.append(preprocessing.normalize(image))
    return inputs


def series_inputs(series: list[SliceFile], preprocessing) -> tuple[list[int], list[np.ndarray]]:
    """The readable slices of a series (their indices) and the network's input of each, its
    neighbours as context; an unreadable file gets its error (in place)."""
    loader = preprocessing.file_loader()
    images: list[np.ndarray | None] = []
    for item in series:
        image = None
        if not item.error:
            try:
                image = loader(item.path)
            except Exception as err:  # reported per file; the series' other slices go on
                item.error = describe_error(err)
        images.append(image)
    readable = [i for i, image in enumerate(images) if image is not None]
    inputs = context_inputs([images[i] for i in readable], preprocessing)
    return readable, inputs


def predict_series(series: list[SliceFile], model: Ensemble, batch_size: int, device) -> None:
    """Every readable slice's probabilities (in place), its neighbours as context."""
    readable, inputs = series_inputs(series, model.first.preprocessing)
    for start in range(0, len(inputs), batch_size):
        batch = torch.from_numpy(np.stack(inputs[start : start + batch_size]))
        probs = model(batch, device)
        for offset, p in enumerate(probs):
            series[readable[start + offset]].probs = p


def _thresholds(cfg: DictConfig, model: Ensemble) -> list[float]:
    """`threshold=` for every label, else the run's validation thresholds, else 0.5."""
    report = run_report(model.first.path)
    return decision_thresholds(
        cfg, model.first.class_names, report if len(model.members) == 1 else None
    )


def decision_thresholds(cfg: DictConfig, labels: Sequence[str], report: Path | None) -> list[float]:
    """`threshold=` for every label, else the thresholds in `report` (a metrics.json), else 0.5."""
    if cfg.get("threshold") is not None:
        value = float(cfg.threshold)
        if not 0 < value < 1:
            raise ConfigError(f"threshold must be in (0, 1), got {cfg.threshold!r}")
        return [value] * len(labels)
    chosen = {}
    if report is not None and report.is_file():
        chosen = validation_thresholds(report)
    return [chosen.get(label, DEFAULT_THRESHOLD) for label in labels]


def run_multilabel_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every input; write a slice row per file and a series row per series."""
    if not cfg.ckpt_path:
        raise ConfigError("a multi-label model is predicted from its checkpoint: ckpt_path=")
    model = load_members(checkpoint_paths(cfg.ckpt_path))
    if model.first.preprocessing is None:
        raise ConfigError(f"{model.first.path} records no preprocessing: retrain it")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {cfg.batch_size!r}")
    labels = model.first.class_names
    any_label = model.first.settings.get("any_label")
    thresholds = np.asarray(_thresholds(cfg, model))
    device = resolve_device(cfg.device)
    all_series = group_series(resolve_inputs(cfg.inputs))
    for series in all_series:
        predict_series(series, model, int(cfg.batch_size), device)
        if model.first.settings.get("enforce_any"):
            for item in series:
                if item.probs is not None:
                    item.probs = enforce_any(item.probs[None], labels, any_label)[0]
    output = Path(cfg.output_csv)
    failures = sum(1 for series in all_series for item in series if item.error)
    files = sum(len(series) for series in all_series)
    write_rows(output, all_series, labels, thresholds)
    return output, files, failures


def _decided(probs: np.ndarray, labels: Sequence[str], thresholds: np.ndarray) -> str:
    return label_set([c for c, p, t in zip(labels, probs, thresholds, strict=True) if p >= t])


def write_rows(
    output: Path,
    all_series: list[list[SliceFile]],
    labels: Sequence[str],
    thresholds,
    series_probs: Sequence[np.ndarray | None] | None = None,
) -> None:
    """The CSV: a row per slice, then its series' row (the max of its slices' probabilities,
    or `series_probs[i]` where a series model scored series i itself)."""
    header = ["level", "path", "series_id", "patient_id", "slices", "labels"]
    header += [f"prob_{label}" for label in labels] + ["error"]
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(output, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, series in enumerate(all_series):
            for item in series:
                probs = [] if item.probs is None else [f"{p:.6f}" for p in item.probs]
                decided = "" if item.probs is None else _decided(item.probs, labels, thresholds)
                probs = probs or [""] * len(labels)
                path = item.path.as_posix()
                writer.writerow(["slice", path, item.series_id, item.patient_id, 1, decided,
                                 *probs, item.error])  # fmt: skip
            scored = [item.probs for item in series if item.probs is not None]
            if scored:
                own = None if series_probs is None else series_probs[i]
                top = np.max(scored, axis=0) if own is None else own
                writer.writerow(["series", "", series[0].series_id, series[0].patient_id,
                                 len(scored), _decided(top, labels, thresholds),
                                 *[f"{p:.6f}" for p in top], ""])  # fmt: skip
