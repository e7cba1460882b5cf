"""`stroke-predict` on 3-D segmentation checkpoints (one, or a fold ensemble): label volumes.

Per input scan (a NIfTI file, or a folder holding one DICOM series): a NIfTI label volume
`<mask_dir>/<case>_seg.nii.gz` on the input's voxel grid with the input's affine (class
indices: 0 background, k the k-th lesion class), an overlay PNG of the axial slice with the
most lesion, and a row of `predictions.csv` with the lesion volume in mL and the count of
lesions per class. A folder of scans (NIfTI files and series folders) predicts each. A scan
that cannot be read gets its error in the `error` column; the others carry on.
"""

from __future__ import annotations

import csv
import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import LoadImage
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from stroke.data.nifti import is_nifti
from stroke.data.volume_source import case_name, is_dicom_series_folder
from stroke.errors import ConfigError
from stroke.evaluation.lesions import connected_lesions
from stroke.evaluation.overlay import mask_overlay
from stroke.hardware import resolve_device
from stroke.io import atomic_writer
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.segmentation_3d.checkpoint import load_volume_segmenter
from stroke.tasks.segmentation_3d.evaluate import check_members
from stroke.tasks.segmentation_3d.inference import VolumePredictor, VolumeResult

log = logging.getLogger("stroke.predict")


def volume_inputs(inputs) -> list[Path]:
    """The scans `inputs` names: NIfTI files and DICOM series folders, or folders of them."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    scans: list[Path] = []
    for item in items:
        path = Path(str(item)).expanduser()
        if (path.is_file() and is_nifti(path)) or is_dicom_series_folder(path):
            scans.append(path)
        elif path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if (p.is_file() and is_nifti(p))]
            found += [p for p in sorted(path.rglob("*")) if is_dicom_series_folder(p)]
            if not found:
                raise ConfigError(
                    f"inputs={str(item)!r} holds no NIfTI volume nor DICOM series folder"
                )
            scans.extend(found)
        elif path.is_file():
            raise ConfigError(
                f"inputs={str(item)!r} is not a volume: a 3-D segmenter takes NIfTI files "
                "(.nii, .nii.gz) or folders holding one DICOM series each"
            )
        else:
            raise ConfigError(f"inputs={str(item)!r} does not exist")
    return scans


def run_volume_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every scan and write label volumes and the CSV; (csv, scans, failures)."""
    if not cfg.ckpt_path:
        raise ConfigError("a 3-D segmenter predicts from its checkpoint: give ckpt_path=")
    if cfg.backend != "torch" or cfg.threshold is not None or cfg.explain or cfg.tta:
        raise ConfigError(
            "backend=onnx, threshold=, explain=true and tta=true do not apply to a 3-D "
            "segmenter (its label volumes are the explanation)"
        )
    models = [load_volume_segmenter(p) for p in checkpoint_paths(cfg.ckpt_path)]
    check_members(models)
    first = models[0]
    min_ml = _ensemble_min_lesion_ml(models)
    predictor = VolumePredictor(
        [m.net for m in models], first.plan, first.lesion_classes, resolve_device(cfg.device),
        first.sw_overlap, first.sw_batch_size, min_ml,
    )  # fmt: skip
    inputs = OmegaConf.to_object(cfg.inputs) if OmegaConf.is_config(cfg.inputs) else cfg.inputs
    scans = volume_inputs(inputs)
    csv_path, mask_dir = Path(cfg.output_csv), Path(cfg.mask_dir)
    overlay_dir = Path(cfg.overlay_dir)
    failures = 0
    taken: set[str] = set()
    header = ["input", "case", "mask", "shape", "spacing_mm"]
    for name in first.lesion_classes:
        header += [f"{name}_ml", f"{name}_lesions"]
    header.append("error")
    with atomic_writer(csv_path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for scan in scans:
            case = _unique(case_name(scan), taken)
            try:
                result = predictor.predict(scan)
            except Exception as err:  # one unreadable scan must not stop the others
                failures += 1
                log.error("%s: %s", scan, err)
                writer.writerow([str(scan), case, *[""] * (len(header) - 3), str(err)])
                continue
            mask_path = mask_dir / f"{case}_seg.nii.gz"
            _write_nifti(mask_path, result)
            _write_overlay(overlay_dir / f"{case}_overlay.png", scan, result)
            row = [str(scan), case, str(mask_path), "x".join(map(str, result.labels.shape)),
                   "x".join(f"{s:.4g}" for s in result.spacing)]  # fmt: skip
            volumes = result.volumes_ml()
            for k, name in enumerate(first.lesion_classes, start=1):
                row += [f"{volumes[name]:.4f}", connected_lesions(result.labels == k)[1]]
            writer.writerow([*row, ""])
    return csv_path, len(scans), failures


def _ensemble_min_lesion_ml(models) -> list[float] | None:
    """The members' chosen smallest lesion per class, their median (none recorded: keep all)."""
    chosen = [m.min_lesion_ml for m in models if m.min_lesion_ml]
    if not chosen:
        return None
    return [float(v) for v in np.median(np.asarray(chosen, dtype=float), axis=0)]


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _write_nifti(path: Path, result: VolumeResult) -> None:
    image = nib.Nifti1Image(result.labels.astype(np.uint8), result.affine)
    image.set_qform(result.affine, code=1)
    image.set_sform(result.affine, code=1)
    with atomic_writer(path, "wb") as f:  # .nii.gz: the NIfTI bytes gzipped
        f.write(gzip.compress(image.to_bytes(), compresslevel=6))


def _write_overlay(path: Path, scan: Path, result: VolumeResult) -> None:
    """The axial slice with the most lesion voxels, in the brain window, lesions coloured."""
    volume = np.asarray(LoadImage(image_only=True)(str(scan)), dtype=np.float32)
    if volume.shape != result.labels.shape:
        return
    axial = int(np.argmax(np.abs(result.affine[2, :3])))  # the voxel axis closest to S-I
    counts = (np.moveaxis(result.labels, axial, 0) > 0).reshape(volume.shape[axial], -1).sum(1)
    index = int(np.argmax(counts))
    image = np.take(volume, index, axis=axial)
    mask = np.take(result.labels, index, axis=axial)
    gray = (np.clip(image, 0.0, 80.0) / 80.0 * 255).astype(np.uint8)
    overlay = mask_overlay(np.rot90(gray), np.rot90(mask))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as f:
        Image.fromarray(overlay).save(f, format="PNG")
