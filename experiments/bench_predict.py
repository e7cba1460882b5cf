"""Throughput of `stroke-predict` on CPU: PyTorch vs ONNX Runtime backends, same inputs.

    python experiments/bench_predict.py                       # head CT images, cnn_small + resnet18
    python experiments/bench_predict.py models=[cnn_bn] image_size=128 repeats=3
    python experiments/bench_predict.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt

Inputs: ../shared/datasets/head_ct/images (200 RGB PNGs, ~820x960) when present, else a
phantom written to a temporary folder. Without ckpt_path each model is built untrained
(throughput does not depend on the weights) and saved as a checkpoint the way
stroke-train does. Prints two figures per backend: end to end (decode, letterbox,
model, CSV: what a user waits for) and model only (pre-decoded batches).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from stroke.checkpoint import RECORD_KEY, CheckpointRecord
from stroke.cli.export import export_checkpoint
from stroke.cli.predict import run_prediction
from stroke.config import source_checkout
from stroke.inference.predictor import OnnxBackend, TorchBackend, predict_files, resolve_inputs
from stroke.tasks.classification.checkpoint import load_classifier
from stroke.tasks.classification.module import StrokeClassifier

DEFAULTS = {
    "inputs": str(source_checkout().parent / "shared" / "datasets" / "head_ct" / "images"),
    "ckpt_path": None,
    "models": ["cnn_small", "resnet18"],
    "image_size": 150,
    "in_chans": 1,
    "batch_size": 32,
    "num_workers": 0,
    "repeats": 3,
}


def untrained_checkpoint(name: str, image_size: int, in_chans: int, folder: Path) -> Path:
    """A checkpoint file with the layout stroke-train writes (weights_only-loadable)."""
    classes = ["none", "hemorrhage"]
    module = StrokeClassifier(
        backbone={"name": name}, num_classes=2, input_channels=in_chans, class_names=classes
    )
    path = folder / f"{name}.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            RECORD_KEY: CheckpointRecord(
                task="classification",
                class_names=classes,
                preprocessing={
                    "image_size": image_size,
                    "in_chans": in_chans,
                    "mean": [0.5] * in_chans,
                    "std": [0.25] * in_chans,
                },
            ).to_dict(),
        },
        path,
    )
    return path


def best_of(repeats: int, run) -> float:
    """Shortest wall time of `repeats` runs (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def bench(ckpt: Path, inputs: str, cfg, workdir: Path) -> None:
    onnx_path = workdir / f"{ckpt.stem}.onnx"
    export_cfg = OmegaConf.create(
        {
            "ckpt_path": str(ckpt),
            "format": "onnx",
            "opset": 18,
            "output_path": str(onnx_path),
            "image_size": None,
        }
    )
    _, difference = export_checkpoint(export_cfg)
    classifier = load_classifier(ckpt)
    n_files = len(resolve_inputs(inputs))
    pre = classifier.preprocessing
    print(
        f"\n{classifier.backbone['name']} at {pre.image_size} px, in_chans {pre.in_chans}, "
        f"{n_files} files, batch {cfg.batch_size}, torch threads {torch.get_num_threads()}, "
        f"ONNX max abs difference {difference:.1e}"
    )
    # pre-decoded batches for the model-only figure
    batches = [
        np.stack([r.tensor for r in batch])
        for batch in predict_files(
            resolve_inputs(inputs),
            pre,
            TorchBackend(classifier.net),
            cfg.batch_size,
            keep_images=True,
            progress=False,
        )
    ]
    for backend_name in ("torch", "onnx"):
        predict_cfg = OmegaConf.create(
            {
                "ckpt_path": str(ckpt),
                "onnx_path": str(onnx_path),
                "inputs": inputs,
                "output_csv": str(workdir / f"{backend_name}.csv"),
                "backend": backend_name,
                "tta": False,
                "batch_size": cfg.batch_size,
                "num_workers": cfg.num_workers,
                "device": "cpu",
                "threshold": None,
                "explain": False,
                "explain_dir": "",
                "target_layer": None,
                "image_size": None,
                "progress": False,
            }
        )
        end_to_end = best_of(cfg.repeats, lambda c=predict_cfg: run_prediction(c))
        backend = (
            TorchBackend(classifier.net) if backend_name == "torch" else OnnxBackend(onnx_path)
        )
        backend(batches[0])  # warm-up
        model_only = best_of(cfg.repeats, lambda b=backend: [b(x) for x in batches])
        print(
            f"  {backend_name:>5}: end to end {n_files / end_to_end:7.1f} images/s   "
            f"model only {n_files / model_only:7.1f} images/s"
        )


def main() -> None:
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_cli())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        inputs = cfg.inputs
        if not Path(inputs).is_dir():
            from stroke.synth import PhantomConfig, generate_phantom

            generate_phantom(
                workdir / "phantom",
                PhantomConfig(n_patients=25, slices_per_patient=8),
                progress=False,
            )
            inputs = str(workdir / "phantom")
            print(f"{cfg.inputs} not found: using a phantom of 200 images")
        if cfg.ckpt_path:
            bench(Path(cfg.ckpt_path), inputs, cfg, workdir)
            return
        for name in cfg.models:
            ckpt = untrained_checkpoint(name, cfg.image_size, cfg.in_chans, workdir)
            bench(ckpt, inputs, cfg, workdir)


if __name__ == "__main__":
    main()
