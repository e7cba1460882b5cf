"""stroke's 3-D segmenter and nnU-Net side by side, on the same split, scored by the same code.

    pip install -e '.[nnunet]'
    stroke-synth layout=volumes
    stroke-train experiment=lesion_segmentation_3d hydra.run.dir=outputs/compare/stroke
    python experiments/nnunet_compare.py --stroke-run outputs/compare/stroke \
        --work outputs/compare/nnunet --epochs 1000 --iterations 21 --time-budget 959

What it does:
1. reads the stroke run's `splits.csv` (its patient-grouped train/val/test) and writes the
   same scans in nnU-Net's raw format (`imagesTr/<case>_0000.nii.gz`, `labelsTr`, `imagesTs`,
   `dataset.json`), with stroke's train/val as nnU-Net's fold 0 (`splits_final.json`);
2. runs nnU-Net's own fingerprint, planning and preprocessing (`nnUNetv2_plan_and_preprocess`);
3. trains each configuration (3d_fullres, 2d) with nnU-Net's trainer, shortened to
   `--epochs` x `--iterations` (nnU-Net's default is 1000 x 250) and, with `--time-budget`,
   stopped after the first epoch past that many seconds (the stroke run's wall time: the
   same time for both); on the CPU unless `--device cuda`;
4. predicts the test scans with each (nnU-Net's predictor: sliding window, Gaussian, mirroring)
   and with the stroke run's checkpoint, and scores all of them with
   `stroke.evaluation.lesions.volume_scores` (Dice, lesion F1, absolute volume difference),
   means with 95% intervals from a bootstrap over patients;
5. prints a Markdown table and writes `<work>/comparison.json`.

nnU-Net is the benchmark's opponent only (the optional extra `nnunet`); stroke never imports it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from stroke.evaluation.lesions import volume_scores
from stroke.evaluation.metrics import bootstrap_intervals

DATASET_ID = 577
DATASET = f"Dataset{DATASET_ID:03d}_StrokeCompare"
METRICS = ("dice/any", "lesion_f1/any", "absolute_volume_difference_ml/any")


def read_split(run: Path) -> dict[str, list[dict]]:
    """The stroke run's scans by split: path, label path, patient."""
    rows = list(csv.DictReader((run / "splits.csv").open()))
    by_split: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for row in rows:
        image = Path(row["path"])
        case = image.name.removesuffix(".nii.gz").removesuffix(".nii")
        label = image.parent.parent / "labels" / f"{case}.nii.gz"
        by_split[row["split"]].append(
            {"case": case, "image": image, "label": label, "patient": row["patient_id"]}
        )
    return by_split


def write_raw(split: dict[str, list[dict]], raw: Path, lesion_classes: list[str]) -> Path:
    """nnU-Net's raw layout of the same scans."""
    root = raw / DATASET
    if root.exists():
        shutil.rmtree(root)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    for item in split["train"] + split["val"]:
        shutil.copy(item["image"], root / "imagesTr" / f"{item['case']}_0000.nii.gz")
        shutil.copy(item["label"], root / "labelsTr" / f"{item['case']}.nii.gz")
    for item in split["test"]:
        shutil.copy(item["image"], root / "imagesTs" / f"{item['case']}_0000.nii.gz")
    labels = {"background": 0} | {name: k for k, name in enumerate(lesion_classes, start=1)}
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": len(split["train"]) + len(split["val"]),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return root


def environment(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(work / name)
    env.setdefault("nnUNet_n_proc_DA", "2")
    return env


def plan_and_preprocess(work: Path, env: dict[str, str], configurations: list[str]) -> float:
    start = time.perf_counter()
    command = [
        str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"),
        "-d",
        str(DATASET_ID),
        "-c",
        *configurations,
        "-np",
        "2",
        "--verify_dataset_integrity",
    ]
    subprocess.run(command, env=env, check=True)
    return time.perf_counter() - start


def write_fold(work: Path, split: dict[str, list[dict]]) -> None:
    """stroke's train/val as nnU-Net's fold 0, so both validate on the same scans."""
    folds = [
        {"train": [i["case"] for i in split["train"]], "val": [i["case"] for i in split["val"]]}
    ]
    (work / "nnUNet_preprocessed" / DATASET / "splits_final.json").write_text(json.dumps(folds))


class OutOfTime(Exception):
    """The training budget of wall time is spent (raised at the end of an epoch)."""


def short_trainer(epochs: int, iterations: int, budget_s: float | None):
    """nnU-Net's own trainer, shortened to `epochs` x `iterations`, and stopped at the end of
    the first epoch past `budget_s` seconds of wall time when one is given."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class nnUNetTrainerShort(nnUNetTrainer):  # noqa: N801 (nnU-Net's naming)
        # nnU-Net records its trainer's own arguments by name: the signature must be its own
        def __init__(self, plans, configuration, fold, dataset_json, device=None):
            device = device if device is not None else torch.device("cuda")
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(1, iterations // 5)

        def on_train_start(self):
            super().on_train_start()
            self.started = time.perf_counter()

        def on_epoch_end(self):
            super().on_epoch_end()
            if budget_s is not None and time.perf_counter() - self.started > budget_s:
                raise OutOfTime

    return nnUNetTrainerShort


def train_nnunet(configuration: str, trainer_class, device: str) -> tuple[float, Path, int]:
    """Train fold 0 in this process; (seconds, the model folder, patches per step)."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json

    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / DATASET  # noqa: SIM112 (nnU-Net's name)
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    plans["continue_training"] = False  # what nnUNetv2_train sets before building a trainer
    trainer = trainer_class(plans, configuration, 0, dataset_json, torch.device(device))
    start = time.perf_counter()
    try:
        trainer.run_training()
    except OutOfTime:
        trainer.on_train_end()  # the final checkpoint, the loaders shut down
    seconds = time.perf_counter() - start
    batch = int(plans["configurations"][configuration]["batch_size"])
    return seconds, Path(trainer.output_folder).parent, batch * iterations_run(trainer)


def iterations_run(trainer) -> int:
    """Training iterations of the epochs a trainer finished."""
    return int(trainer.current_epoch) * int(trainer.num_iterations_per_epoch)


def predict_nnunet(model: Path, trainer_class, images: Path, out: Path, device: str) -> float:
    import torch
    from nnunetv2.inference import predict_from_raw_data as nn_predict

    # the short trainer lives in this script, not in nnunetv2's package: let the predictor find it
    nn_predict.recursive_find_trainer_class_by_name = lambda name: trainer_class
    predictor = nn_predict.nnUNetPredictor(device=torch.device(device), verbose=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    start = time.perf_counter()
    predictor.predict_from_files(
        str(images),
        str(out),
        save_probabilities=False,
        num_processes_preprocessing=1,
        num_processes_segmentation_export=1,
    )
    return time.perf_counter() - start


def predict_stroke(run: Path, split: dict[str, list[dict]], out: Path, device: str) -> float:
    """The stroke run's best checkpoint through stroke-predict's own predictor."""
    from stroke.tasks.segmentation_3d.checkpoint import load_volume_segmenter
    from stroke.tasks.segmentation_3d.inference import VolumePredictor

    checkpoints = sorted((run / "checkpoints").glob("epoch_*.ckpt")) or [
        run / "checkpoints" / "last.ckpt"
    ]
    model = load_volume_segmenter(checkpoints[-1])
    predictor = VolumePredictor(
        [model.net],
        model.plan,
        model.lesion_classes,
        device,
        model.sw_overlap,
        model.sw_batch_size,
        model.min_lesion_ml,
    )
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for item in split["test"]:
        result = predictor.predict(item["image"])
        nib.save(nib.Nifti1Image(result.labels, result.affine), out / f"{item['case']}.nii.gz")
    return time.perf_counter() - start


def score(predictions: Path, split: dict[str, list[dict]], lesion_classes: list[str]) -> dict:
    """Per-scan scores, then means with patient-bootstrap 95% intervals."""
    rows = []
    for item in split["test"]:
        truth = nib.load(item["label"])
        pred = nib.load(predictions / f"{item['case']}.nii.gz")
        spacing = truth.header.get_zooms()[:3]
        rows.append(
            volume_scores(
                np.asarray(truth.dataobj),
                np.asarray(pred.dataobj).astype(np.uint8),
                lesion_classes,
                spacing,
            )
        )
    patients = [item["patient"] for item in split["test"]]

    def means(idx: np.ndarray) -> dict[str, float]:
        return {k: float(np.nanmean([rows[i][k] for i in idx])) for k in METRICS}

    point = means(np.arange(len(rows)))
    intervals = bootstrap_intervals(means, len(rows), patients, n_boot=1000)
    return {k: {"value": point[k], "ci": list(intervals[k])} for k in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stroke-run", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=21)
    parser.add_argument("--configurations", nargs="+", default=["3d_fullres", "2d"])
    parser.add_argument("--lesion-classes", nargs="+", default=["hemorrhage", "infarct"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds of training per configuration (e.g. the stroke run's), else the epochs",
    )
    args = parser.parse_args()
    split = read_split(args.stroke_run)
    env = environment(args.work.resolve())
    os.environ.update(env)
    write_raw(split, args.work.resolve() / "nnUNet_raw", args.lesion_classes)
    results: dict[str, dict] = {"split": {k: len(v) for k, v in split.items()}}
    results["nnunet_preprocessing_s"] = plan_and_preprocess(args.work, env, args.configurations)
    write_fold(args.work.resolve(), split)
    trainer_class = short_trainer(args.epochs, args.iterations, args.time_budget)
    for configuration in args.configurations:
        train_s, model, patches = train_nnunet(configuration, trainer_class, args.device)
        out = args.work / "predictions" / f"nnunet_{configuration}"
        infer_s = predict_nnunet(
            model, trainer_class, args.work / "nnUNet_raw" / DATASET / "imagesTs", out, args.device
        )
        results[f"nnunet_{configuration}"] = score(out, split, args.lesion_classes) | {
            "training_s": train_s,
            "inference_s_per_volume": infer_s / len(split["test"]),
            "patches_seen": patches,
        }
        (args.work / "comparison.json").write_text(json.dumps(results, indent=2))
    # the stroke run last: it may still be training while nnU-Net does
    while (
        not (args.stroke_run / "status.json").is_file()
        or json.loads((args.stroke_run / "status.json").read_text()).get("status") == "running"
    ):
        time.sleep(30)
    stroke_out = args.work / "predictions" / "stroke_3d"
    seconds = predict_stroke(args.stroke_run, split, stroke_out, args.device)
    results["stroke_3d"] = score(stroke_out, split, args.lesion_classes) | {
        "inference_s_per_volume": seconds / len(split["test"])
    }
    (args.work / "comparison.json").write_text(json.dumps(results, indent=2))
    header = ["model", "Dice (any)", "lesion F1 (any)", "abs. volume error (mL)"]
    print("| " + " | ".join([*header, "training s", "inference s/volume"]) + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, entry in results.items():
        if not isinstance(entry, dict) or "dice/any" not in entry:
            continue
        cells = [
            f"{entry[k]['value']:.3f} [{entry[k]['ci'][0]:.3f}, {entry[k]['ci'][1]:.3f}]"
            for k in METRICS
        ]
        print(
            f"| {name} | {' | '.join(cells)} | {entry.get('training_s', float('nan')):.0f} | "
            f"{entry['inference_s_per_volume']:.2f} |"
        )


if __name__ == "__main__":
    main()
