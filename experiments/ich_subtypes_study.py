"""The study of experiments/ich_subtypes.md: stage 2 (the series GRU) against stage 1's slice
probabilities and their max and mean over a series, on the subtype phantom.

Input: `oof_features.npz` of a stroke-series run (each slice's features and logits from the
stage-1 fold model that held it out) and the phantom's phantom.json (each patient's subtype
slice runs). Stage 2 is scored by an inner patient-grouped 5-fold cross-validation over the
out-of-fold series: each patient's stage-2 predictions come from a stage 2 that never
trained on that patient (nor picked its epoch on it), so every patient has one stage-1 and
one stage-2 prediction, both out of fold. Intervals: patient bootstrap (1000 resamples);
differences: paired patient bootstrap.

    python experiments/ich_subtypes_study.py --features <series run>/oof_features.npz \
        --phantom /tmp/series_phantom --out experiments/ich_subtypes_study.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stroke.evaluation.evaluate import EvaluationConfig
from stroke.tasks.multilabel.features import SeriesFeatures
from stroke.tasks.multilabel.metrics import label_weights, multilabel_scores
from stroke.tasks.multilabel.report import scored
from stroke.tasks.multilabel.sequence import pad_series
from stroke.tasks.multilabel.series import fit_series_model, split_by_patient

LABELS = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
WEIGHTS = {"any": 2}
CONFIG = EvaluationConfig(n_boot=1000)


def read_series(path: Path) -> list[SeriesFeatures]:
    data = np.load(path)
    rows: dict[str, list[int]] = {}
    for i, series in enumerate(data["series_id"]):
        rows.setdefault(str(series), []).append(i)
    series = []
    for series_id, index in rows.items():
        index = sorted(index, key=lambda i: data["order"][i])
        series.append(SeriesFeatures(
            series_id, str(data["patient_id"][index[0]]), [str(data["path"][i]) for i in index],
            data["features"][index], data["logits"][index], data["targets"][index],
            int(data["fold"][index[0]]),
        ))  # fmt: skip
    return series


def near_lesion_ends(series: list[SeriesFeatures], phantom: Path) -> list[np.ndarray]:
    """Per series, the slices within one of the first or last slice of a subtype's run."""
    runs = {p["patient_id"]: p["runs"] for p in json.loads(phantom.read_text())["patients"]}
    masks = []
    for s in series:
        index = np.arange(len(s.paths))
        mask = np.zeros(len(index), dtype=bool)
        for first, last in runs[s.patient_id].values():
            mask |= (np.abs(index - first) <= 1) | (np.abs(index - last) <= 1)
        masks.append(mask)
    return masks


def stage2_out_of_fold(series, settings, folds: int = 5, seed: int = 0):
    """Slice and series probabilities of every series from an inner CV of stage 2."""
    patients = sorted({s.patient_id for s in series})
    order = np.random.default_rng(seed).permutation(patients)
    fold_of = {p: k % folds for k, p in enumerate(order)}
    slices, whole = [None] * len(series), [None] * len(series)
    for k in range(folds):
        pool = [s for s in series if fold_of[s.patient_id] != k]
        train, val = split_by_patient(pool, 0.2, seed + k)
        model = fit_series_model(train, val, LABELS, {**settings, "seed": seed + k}, WEIGHTS)
        held = [i for i, s in enumerate(series) if fold_of[s.patient_id] == k]
        x, mask, _ = pad_series([series[i].inputs(settings["use_features"]) for i in held])
        with torch.no_grad():
            slice_logits, series_logits = model.net.eval()(x, mask)
        for j, i in enumerate(held):
            slices[i] = torch.sigmoid(slice_logits[j, : len(series[i].paths)]).numpy()
            whole[i] = torch.sigmoid(series_logits[j]).numpy()
    return slices, np.stack(whole)


def paired_difference(statistic, groups, n_boot=1000, seed=0):
    """Point value and 95% paired patient-bootstrap interval of statistic(indices)."""
    groups = np.asarray(groups)
    names = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in names}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        drawn = rng.choice(names, len(names), replace=True)
        value = statistic(np.concatenate([members[g] for g in drawn]))
        if not np.isnan(value):
            values.append(value)
    point = statistic(np.arange(len(groups)))
    low, high = np.percentile(values, [2.5, 97.5])
    return {"value": point, "low": float(low), "high": float(high)}


def study(series, ends, settings):
    weights = label_weights(LABELS, WEIGHTS)
    cuts = [0.5] * len(LABELS)
    seq_slices, seq_series = stage2_out_of_fold(series, settings)
    y = np.concatenate([s.targets for s in series])
    stage1 = np.concatenate([1 / (1 + np.exp(-s.logits)) for s in series])
    seq = np.concatenate(seq_slices)
    near = np.concatenate(ends)
    slice_patients = np.array([s.patient_id for s in series for _ in s.paths])
    series_y = np.stack([s.targets.max(axis=0) for s in series])
    series_patients = [s.patient_id for s in series]
    aggregated = {
        "stage 1 max": np.stack([1 / (1 + np.exp(-s.logits.max(axis=0))) for s in series]),
        "stage 1 mean": np.stack([(1 / (1 + np.exp(-s.logits))).mean(axis=0) for s in series]),
        "sequence": seq_series,
    }

    def score(t, p, g):
        return scored(t, p, list(g), LABELS, weights, cuts, CONFIG)

    result = {
        "slices": {
            "stage 1": score(y, stage1, slice_patients),
            "sequence": score(y, seq, slice_patients),
        },
        "slices near lesion ends": {
            "stage 1": score(y[near], stage1[near], slice_patients[near]),
            "sequence": score(y[near], seq[near], slice_patients[near]),
        },
        "series": {name: score(series_y, p, series_patients) for name, p in aggregated.items()},
    }  # fmt: skip

    def wll(p, mask):
        return lambda i: multilabel_scores(y[mask][i], p[mask][i], LABELS, weights)[
            "weighted_log_loss"
        ]

    def any_auc(p):
        return lambda i: multilabel_scores(series_y[i], p[i], LABELS, weights)["roc_auc/any"]

    everything = np.ones(len(y), dtype=bool)
    differences = {}
    for name, mask in (("slices", everything), ("slices near lesion ends", near)):
        differences[f"{name}: weighted log loss, sequence - stage 1"] = paired_difference(
            lambda i, m=mask: wll(seq, m)(i) - wll(stage1, m)(i), slice_patients[mask]
        )
    for other in ("stage 1 max", "stage 1 mean"):
        differences[f"series: any ROC AUC, sequence - {other}"] = paired_difference(
            lambda i, o=other: any_auc(seq_series)(i) - any_auc(aggregated[o])(i), series_patients
        )
    result["differences (paired patient bootstrap)"] = differences  # fmt: skip
    result["counts"] = {"slices": int(len(y)), "near lesion ends": int(near.sum()),
                        "series": len(series), "patients": len(set(series_patients))}  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--phantom", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    series = read_series(args.features)
    ends = near_lesion_ends(series, args.phantom / "phantom.json")
    results = {}
    for name, use_features in (("features and logits", True), ("logits only", False)):
        started = time.time()
        settings = {"hidden": 64, "conv": True, "dropout": 0.2, "use_features": use_features,
                    "epochs": args.epochs, "batch_size": 8, "lr": 1e-3}  # fmt: skip
        results[name] = study(series, ends, settings)
        results[name]["seconds"] = round(time.time() - started, 1)
        print(name, json.dumps(results[name]["differences (paired patient bootstrap)"], indent=1))
    args.out.write_text(json.dumps(results, indent=1, default=float))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
