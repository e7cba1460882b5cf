"""The corpus of bad inputs and faults (issue 12): each gets its exact answer, none is silent.

Every case builds its bad input in a temporary folder and runs the real code path: a data
module set up on it, a checkpoint read, a command's `main` run in this process. A case
expects either an error that the error contract (stroke.cli.errors) turns into one line
naming the file or key and a status of its kind (2 config, 3 data, 4 checkpoint, 5 disk),
never a raw traceback; or a documented handling, asserted in full (what is left out and
where it is named, which metric is null and why). docs/reliability.md has the table.
The signal, kill -9 and SLURM cases are in test_interrupt.py and test_resume.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from commands import run_main
from conftest import TINY, make_class_folders, write_image
from dicom_factory import ct_dataset, non_image_objects, save
from omegaconf import OmegaConf
from test_nifti import ct_volume, write_volume

import stroke.io
from stroke.checkpoint import read_checkpoint
from stroke.cli import eval as eval_cli
from stroke.cli import predict as predict_cli
from stroke.cli import train as train_cli
from stroke.cli.errors import classify
from stroke.data import CsvSource, DicomSource, FolderSource, NiftiSource, StrokeDataModule
from stroke.data.audit import SKIPPED_CSV
from stroke.evaluation.epoch_metrics import epoch_scores, undefined_metrics
from stroke.evaluation.evaluate import EvaluationConfig, SplitPredictions, evaluate_predictions
from stroke.io import atomic_write_json, atomic_write_text, check_writable
from stroke.runs.preflight import check_resume_checkpoint
from stroke.runs.record import read_status, write_status

CASES: list[Callable] = []


def case(fn: Callable) -> Callable:
    CASES.append(fn)
    return fn


def expect_error(run: Callable[[], object], code: int, *words: str) -> str:
    """`run` fails with a user error of status `code`, in one line holding every word."""
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - every kind is checked below
        failure = classify(exc)
        assert failure is not None, f"raw traceback for {type(exc).__name__}: {exc}"
        assert failure.code == code, (failure, exc)
        assert "\n" not in failure.message
        for word in words:
            assert word in failure.message, (word, failure.message)
        return failure.message
    raise AssertionError("no error: a silent result")


def expect_cli(status: tuple[int, str, str], code: int, *words: str) -> str:
    """A command's (status, stdout, stderr): the status and one `error:` line with the words."""
    got, _, err = status
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert got == code, err[-2000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def datamodule(source, **kwargs) -> StrokeDataModule:
    options = dict(image_size=16, in_chans=1, num_workers=0, leakage="off", seed=0)
    options.update(val_fraction=0.0, test_fraction=0.0)
    options.update(kwargs)
    dm = StrokeDataModule(source, **options)
    dm.setup("fit")
    return dm


def two_classes(root: Path, per_class: int = 4) -> Path:
    return make_class_folders(root, {"normal": per_class, "stroke": per_class}, size=16)


def png(path: Path, value: int = 100) -> Path:
    return write_image(path, np.full((16, 16), value, dtype=np.uint8))


def left_out(dm: StrokeDataModule) -> dict[str, str]:
    return {Path(item.path).name: item.reason for item in dm.left_out}


def csv_dataset(root: Path, rows: list[str]) -> Path:
    """`<root>/labels.csv` with `rows` under a `path,label` header; images made as named."""
    for row in rows:
        name = row.split(",")[0]
        if name and name.endswith(".png") and not name.startswith("missing"):
            png(root / name)
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


# == configs and overrides ==================================================================
@case
def config_unknown_option_lists_the_choices(tmp_path, get):
    line = expect_cli(run_main(train_cli.main, "model=resnet_nope", capsys=get("capsys")), 2)
    assert "Could not find 'model/resnet_nope'" in line


@case
def config_misspelled_key(tmp_path, get):
    expect_cli(run_main(train_cli.main, "trainer.max_epoch=3", capsys=get("capsys")), 2,
               "trainer.max_epoch", "not in struct")  # fmt: skip


@case
def config_unparsable_override(tmp_path, get):
    expect_cli(run_main(train_cli.main, "data.image_size=[", capsys=get("capsys")), 2,
               "cannot parse an override")  # fmt: skip


def _train(get, tmp_path, *overrides):
    return run_main(
        train_cli.main, *TINY, f"data.root={get('phantom_dir')}", "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}", *overrides, capsys=get("capsys"),
    )  # fmt: skip


@case
def config_non_numeric_max_epochs(tmp_path, get):
    expect_cli(_train(get, tmp_path, "trainer.max_epochs=abc"), 2,
               "trainer.max_epochs='abc': expected an integer or null")  # fmt: skip


@case
def config_boolean_where_a_number_goes(tmp_path, get):
    expect_cli(_train(get, tmp_path, "trainer.limit_val_batches=true"), 2,
               "trainer.limit_val_batches=True")  # fmt: skip


@case
def config_mandatory_value_missing(tmp_path, get):
    expect_cli(_train(get, tmp_path, "data=folder", "data.root=???"), 2, "data.root is not set")


@case
def config_unknown_constructor_argument(tmp_path, get):
    # the datamodule's settings name the key and the keys there are
    expect_cli(_train(get, tmp_path, "+data.foo=1"), 2, "data.foo is not a data setting",
               "batch_size")  # fmt: skip


@case
def config_interpolation_to_nothing(tmp_path, get):
    expect_cli(_train(get, tmp_path, "data.batch_size=${nope}"), 2, "Interpolation key 'nope'")


@case
def config_batch_size_zero(tmp_path, get):
    expect_cli(
        _train(get, tmp_path, "data.batch_size=0"), 2, "data.batch_size=0: expected an integer >= 1"
    )


@case
def config_image_size_too_small(tmp_path, get):
    expect_cli(_train(get, tmp_path, "data.image_size=4"), 2, "data.image_size", "4")


@case
def config_two_channels(tmp_path, get):
    expect_cli(
        _train(get, tmp_path, "data.in_chans=2"), 2, "data.in_chans=2: expected one of [1, 3]"
    )


@case
def config_unknown_backbone_suggests_names(tmp_path, get):
    expect_cli(_train(get, tmp_path, "model=timm", "model.backbone.name=resnet_nope"), 2,
               "unknown backbone model.backbone.name='resnet_nope'")  # fmt: skip


@case
def config_negative_learning_rate(tmp_path, get):
    expect_cli(_train(get, tmp_path, "model=cnn_small", "model.optimizer.lr=-1"), 2,
               "model.optimizer.lr=-1: expected a number > 0")  # fmt: skip


@case
def config_batch_of_one_through_batch_norm(tmp_path, get):
    expect_cli(_train(get, tmp_path, "model=cnn_bn", "data.batch_size=1"), 2,
               "data.batch_size=1", "batch norm")  # fmt: skip


@case
def config_fractions_leave_no_training_data(tmp_path, get):
    expect_cli(_train(get, tmp_path, "data.val_fraction=0.5", "data.test_fraction=0.5"), 3,
               "leaves no training data")  # fmt: skip


# == folders of images ======================================================================
@case
def folder_root_missing(tmp_path, get):
    expect_error(lambda: datamodule(FolderSource(tmp_path / "nope")), 3, "does not exist")


@case
def folder_root_is_a_file(tmp_path, get):
    png(tmp_path / "a.png")
    expect_error(lambda: datamodule(FolderSource(tmp_path / "a.png")), 3, "is not a folder")


@case
def folder_without_class_folders(tmp_path, get):
    expect_error(lambda: datamodule(FolderSource(tmp_path)), 3, "has no class folders")


@case
def folder_class_without_images(tmp_path, get):
    two_classes(tmp_path)
    (tmp_path / "empty_class").mkdir()
    expect_error(lambda: datamodule(FolderSource(tmp_path)), 3, "empty_class", "holds no images")


@case
def folder_single_class(tmp_path, get):
    make_class_folders(tmp_path, {"normal": 4}, size=16)
    expect_error(lambda: datamodule(FolderSource(tmp_path)), 3, "a single class")


@case
def folder_corrupt_image_named(tmp_path, get):
    two_classes(tmp_path)
    (tmp_path / "stroke" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    expect_error(lambda: datamodule(FolderSource(tmp_path)), 3, "corrupt.png", "cannot decode")


@case
def folder_empty_image_named(tmp_path, get):
    two_classes(tmp_path)
    (tmp_path / "stroke" / "empty.png").write_bytes(b"")
    expect_error(lambda: datamodule(FolderSource(tmp_path)), 3, "empty.png", "0 bytes")


@case
def folder_broken_link_named(tmp_path, get):
    two_classes(tmp_path)
    (tmp_path / "stroke" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    expect_error(lambda: datamodule(FolderSource(tmp_path)), 3, "gone.png", "broken link")


@case
def folder_stray_files_are_named_and_warned(tmp_path, get):
    two_classes(tmp_path)
    (tmp_path / "stroke" / "scan.dcm").write_bytes(b"DICM")
    png(tmp_path / "loose.png")
    (tmp_path / "normal" / "notes.txt").write_text("x")
    (tmp_path / "normal" / ".DS_Store").write_bytes(b"x")
    dm = datamodule(FolderSource(tmp_path))
    assert left_out(dm) == {
        "scan.dcm": "not read by FolderSource (.dcm): e.g. data=dicom reads DICOM",
        "loose.png": "an image outside the class folders",
        "notes.txt": "not an image (.txt)",
        ".DS_Store": "hidden (its name or a folder's starts with '.')",
    }
    (warning,) = dm.data_warnings  # the two an image-reading user may have meant to use
    assert warning.startswith("2 file(s) of FolderSource") and SKIPPED_CSV in warning
    dm.write_left_out(tmp_path / SKIPPED_CSV)
    assert len((tmp_path / SKIPPED_CSV).read_text().splitlines()) == 1 + 4


@case
def folder_linked_folder_is_named_not_followed(tmp_path, get):
    two_classes(tmp_path / "data")
    two_classes(tmp_path / "elsewhere")
    (tmp_path / "data" / "stroke" / "more").symlink_to(tmp_path / "elsewhere" / "stroke")
    dm = datamodule(FolderSource(tmp_path / "data"))
    assert left_out(dm) == {"more": "a linked folder, not followed: copy it in or point "
                                    "data.root at it"}  # fmt: skip
    assert dm.data_warnings and "linked folder" in dm.data_warnings[0]


@case
def folder_masks_are_one_quiet_entry(tmp_path, get):
    two_classes(tmp_path)
    for i in range(3):
        png(tmp_path / "masks" / "stroke" / f"m{i}.png")
    dm = datamodule(FolderSource(tmp_path))
    assert left_out(dm) == {"masks": "a folder of masks / ignored (3 files)"}
    assert dm.data_warnings == []  # expected: logged, listed, not warned about


@case
def folder_split_without_a_class_is_a_warning(tmp_path, get):
    make_class_folders(tmp_path, {"normal": 12, "stroke": 2}, size=16)
    dm = datamodule(FolderSource(tmp_path), val_fraction=0.2, test_fraction=0.2)
    missing = [w for w in dm.data_warnings if "has no image of class 'stroke'" in w]
    assert missing and "null in metrics.json" in missing[0]


@case
def folder_tiny_set_with_empty_validation_split(tmp_path, get):
    data = make_class_folders(tmp_path / "data", {"normal": 2, "stroke": 2}, size=16)
    expect_cli(_train(get, tmp_path, "data=folder", f"data.root={data}", "data.val_fraction=0"), 3,
               "validation split", "is empty", "monitor=val/f1")  # fmt: skip


# == CSV of labels ==========================================================================
@case
def csv_missing(tmp_path, get):
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3, "labels.csv",
                 "does not exist")  # fmt: skip


@case
def csv_empty_file(tmp_path, get):
    (tmp_path / "labels.csv").write_text("")
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3, "is empty")


@case
def csv_binary_file_names_file_and_line(tmp_path, get):
    (tmp_path / "labels.csv").write_bytes(b"path,label\n" + bytes(range(128, 256)))
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3,
                 "labels.csv", "is not UTF-8 text (line 2:")  # fmt: skip


@case
def csv_nul_byte_names_the_line(tmp_path, get):
    (tmp_path / "labels.csv").write_bytes(b"path,label\na.png,normal\nb.png,str\x00oke\n")
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3,
                 "labels.csv", "line 3")  # fmt: skip


@case
def csv_missing_label_column_lists_the_columns(tmp_path, get):
    (tmp_path / "labels.csv").write_text("path,diagnosis\na.png,normal\n")
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3,
                 "source.label_column='label'", "['path', 'diagnosis']")  # fmt: skip


@case
def csv_row_names_a_missing_image(tmp_path, get):
    csv_dataset(tmp_path, ["a.png,normal", "b.png,stroke", "missing.png,stroke"])
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3,
                 "line 4", "missing.png", "do not exist")  # fmt: skip


@case
def csv_bad_split_value_names_the_line(tmp_path, get):
    png(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("path,label,split\na.png,normal,training-set\n")
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv", split_column="split")),
                 3, "line 2", "'training-set'")  # fmt: skip


@case
def csv_empty_label_is_left_out_and_named(tmp_path, get):
    rows = [f"n{i}.png,normal" for i in range(3)] + [f"s{i}.png,stroke" for i in range(3)]
    csv_dataset(tmp_path, [*rows, "unlabelled.png,"])
    dm = datamodule(CsvSource(tmp_path / "labels.csv"))
    assert dm.class_names == ["normal", "stroke"]  # no class named ''
    assert left_out(dm)["unlabelled.png"].startswith("an empty label in CsvSource")
    assert "1 file(s)" in dm.data_warnings[0]


@case
def csv_same_image_twice_same_label_is_kept_once(tmp_path, get):
    rows = [f"n{i}.png,normal" for i in range(3)] + [f"s{i}.png,stroke" for i in range(3)]
    csv_dataset(tmp_path, [*rows, "s0.png,stroke"])
    dm = datamodule(CsvSource(tmp_path / "labels.csv"))
    assert len(dm.samples) == 6
    assert left_out(dm)["s0.png"].startswith("listed twice in CsvSource")


@case
def csv_same_image_two_labels_is_an_error(tmp_path, get):
    rows = [f"n{i}.png,normal" for i in range(3)] + [f"s{i}.png,stroke" for i in range(3)]
    csv_dataset(tmp_path, [*rows, "n1.png,stroke"])
    expect_error(lambda: datamodule(CsvSource(tmp_path / "labels.csv")), 3,
                 "n1.png is labelled both 'normal' and 'stroke'")  # fmt: skip


@case
def csv_images_not_listed_are_named(tmp_path, get):
    rows = [f"n{i}.png,normal" for i in range(3)] + [f"s{i}.png,stroke" for i in range(3)]
    csv_dataset(tmp_path, rows)
    png(tmp_path / "forgotten.png")
    dm = datamodule(CsvSource(tmp_path / "labels.csv"))
    assert left_out(dm) == {"forgotten.png": "not listed in labels.csv"}
    assert "forgotten.png" in dm.data_warnings[0]


# == DICOM and NIfTI ========================================================================
def _dicom_tree(root: Path) -> Path:
    for i, label in enumerate(["normal", "normal", "stroke", "stroke"]):
        hu = np.full((16, 16), 30.0 + 20 * i)
        save(ct_dataset(hu, patient_id=f"P{i}"), root / label / f"P{i}" / "IM0001")
    return root


@case
def dicom_truncated_pixel_data_named(tmp_path, get):
    root = _dicom_tree(tmp_path / "dcm")
    ds = ct_dataset(np.zeros((16, 16)), patient_id="P9")
    ds.PixelData = ds.PixelData[:10]
    save(ds, root / "stroke" / "P9" / "IM0001")
    expect_error(lambda: datamodule(DicomSource(root, progress=False)), 3,
                 "P9/IM0001", "pixel data")  # fmt: skip


@case
def dicom_non_images_are_listed_quietly(tmp_path, get):
    root = _dicom_tree(tmp_path / "dcm")
    non_image_objects(root / "normal" / "P0")
    dm = datamodule(DicomSource(root, progress=False))
    assert left_out(dm) == {
        "DICOMDIR": "DICOMDIR",
        "report": "structured report (SR)",
        "plan.dcm": "without pixel data",
        "README.txt": "not DICOM",
    }
    assert dm.data_warnings == []


@case
def dicom_unlabelled_images_are_named_and_warned(tmp_path, get):
    root = _dicom_tree(tmp_path / "dcm")
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(
        f"{p.relative_to(root).as_posix()},{p.parts[-3]}"
        for p in sorted(root.rglob("IM0001"))[:3]
    ) + "\n")  # fmt: skip
    source = DicomSource(root, labels_csv=tmp_path / "labels.csv", csv_key="path", progress=False)
    dm = datamodule(source)
    assert list(left_out(dm).values()) == [f"no label in {tmp_path / 'labels.csv'}"]
    assert "no label in" in dm.data_warnings[0]


@case
def nifti_corrupt_volume_named(tmp_path, get):
    for label in ("normal", "stroke"):
        write_volume(tmp_path / label / "v1.nii.gz", ct_volume())
    (tmp_path / "stroke" / "bad.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    expect_error(lambda: datamodule(NiftiSource(tmp_path)), 3, "bad.nii.gz", "cannot read NIfTI")


@case
def nifti_two_dimensional_volume_named(tmp_path, get):
    for label in ("normal", "stroke"):
        write_volume(tmp_path / label / "v1.nii.gz", ct_volume())
    write_volume(tmp_path / "stroke" / "flat.nii.gz", np.zeros((16, 16), np.int16))
    expect_error(lambda: datamodule(NiftiSource(tmp_path)), 3, "flat.nii.gz")


# == checkpoints ============================================================================
class _Payload:
    """Pickles as a call of os.system: what a malicious checkpoint would run when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@case
def checkpoint_missing(tmp_path, get):
    expect_error(lambda: read_checkpoint(tmp_path / "nope.ckpt"), 4, "nope.ckpt", "does not exist")


@case
def checkpoint_from_another_program(tmp_path, get):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    expect_error(lambda: read_checkpoint(tmp_path / "other.ckpt"), 4,
                 "not a stroke-train checkpoint")  # fmt: skip


@case
def checkpoint_crafted_runs_nothing(tmp_path, get):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, tmp_path / "evil.ckpt")
    message = expect_error(lambda: read_checkpoint(tmp_path / "evil.ckpt"), 4,
                           "cannot be loaded safely", "posix.system", "could run code")  # fmt: skip
    assert "weights_only=False" not in message and not marker.exists()


@case
def checkpoint_crafted_given_to_resume(tmp_path, get):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, tmp_path / "evil.ckpt")
    line = expect_cli(_train(get, tmp_path, f"ckpt_path={tmp_path / 'evil.ckpt'}"), 4,
                      "cannot be loaded safely", "could run code")  # fmt: skip
    assert "weights_only=False" not in line and not marker.exists()


@case
def checkpoint_weights_only_cannot_resume(tmp_path, get):
    hparams = {"backbone": {"name": "cnn_small"}}  # ours, but saved without its training state
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, tmp_path / "weights.ckpt")
    expect_error(lambda: check_resume_checkpoint(tmp_path / "weights.ckpt"), 4,
                 "cannot resume training", "optimizer_states")  # fmt: skip


@case
def checkpoint_truncated(tmp_path, get):
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, tmp_path / "full.ckpt")
    data = (tmp_path / "full.ckpt").read_bytes()
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    expect_error(lambda: read_checkpoint(tmp_path / "half.ckpt"), 4,
                 "not a readable PyTorch checkpoint")  # fmt: skip


@case
def checkpoint_eval_on_other_classes(tmp_path, get):
    data = make_class_folders(tmp_path / "other", {"cat": 3, "dog": 3}, size=24)
    ckpt = get("trained_run") / "checkpoints" / "last.ckpt"
    expect_cli(run_main(
        eval_cli.main, f"ckpt_path={ckpt}", "data=folder", f"data.root={data}",
        "data.num_workers=0", "evaluation.n_boot=10", f"hydra.run.dir={tmp_path / 'eval'}",
        capsys=get("capsys"),
    ), 4, "trained on classes", "['cat', 'dog']")  # fmt: skip


@case
def checkpoint_preprocessing_wins_over_the_data_group(tmp_path, get):
    """`data=folder` defaults to 224 px, 3 channels; the 32 px 1-channel model is scored as
    it was trained, and the report says where the preprocessing came from."""
    run = get("trained_run")
    data = OmegaConf.load(run / ".hydra" / "config.yaml").data.root
    out = tmp_path / "eval"
    status = run_main(
        eval_cli.main, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "data=folder",
        f"data.root={data}", "data.num_workers=0", "evaluation.n_boot=10",
        f"hydra.run.dir={out}", capsys=get("capsys"),
    )  # fmt: skip
    assert status[0] == 0, status[2][-2000:]
    context = json.loads((out / "metrics.json").read_text())["context"]
    assert context["preprocessing"].startswith("the checkpoint (32 px, 1 channel(s)")
    assert "preprocessing" in (out / "report.md").read_text()


@case
def predict_folder_with_stray_files(tmp_path, get):
    inputs = tmp_path / "inputs"
    png(inputs / "a.png")
    (inputs / "volume.nii.gz").write_bytes(b"x")
    (inputs / "notes.txt").write_text("x")
    out = tmp_path / "predict"
    status = run_main(
        predict_cli.main, f"ckpt_path={get('trained_run') / 'checkpoints' / 'last.ckpt'}",
        f"inputs={inputs}", f"hydra.run.dir={out}", "num_workers=0", "progress=false",
        capsys=get("capsys"),
    )  # fmt: skip
    assert status[0] == 0, status[2][-2000:]
    skipped = (out / SKIPPED_CSV).read_text()
    assert "volume.nii.gz,not an image or DICOM file (.nii.gz),1" in skipped
    assert "notes.txt,not an image or DICOM file (.txt),0" in skipped


# == metrics on splits missing a class ======================================================
@case
def metrics_undefined_are_null_with_a_reason_not_zero(tmp_path, get):
    """TorchMetrics says ROC AUC 0 for a class without images; the epoch metrics say NaN."""
    from stroke.evaluation.epoch_metrics import EpochPredictions, class_support

    classes = ["normal", "ischemic", "hemorrhagic"]
    epoch = EpochPredictions(3)
    epoch.update(torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]), torch.tensor([0, 1]))
    probs, targets = epoch.compute()
    values = epoch_scores(probs, targets, "test", classes)
    assert np.isnan(values["test/roc_auc/hemorrhagic"])
    assert np.isnan(values["test/recall/hemorrhagic"])
    assert values["test/roc_auc"] == 1.0  # the macro mean of the classes present
    reasons = undefined_metrics(values, "test", classes, class_support(targets, 3))
    assert reasons["test/roc_auc/hemorrhagic"] == "no test image of class hemorrhagic"


@case
def metrics_report_of_a_one_class_test_split(tmp_path, get):
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])
    split = SplitPredictions("test", ["a", "b", "c"], ["a", "b", "c"], np.zeros(3, int), probs)
    result = evaluate_predictions(split, None, ["normal", "stroke"], EvaluationConfig(n_boot=10))
    metrics = result["image_level"]["metrics"]
    assert metrics["accuracy"]["value"] == 1.0  # true, and flagged:
    assert metrics["roc_auc"]["value"] is None and metrics["recall/stroke"]["value"] is None
    assert any("no image of class 'stroke'" in w for w in result["warnings"])
    assert any("every test image is of one class" in w for w in result["warnings"])


# == full disks and read-only folders =======================================================
class _FullDisk:
    """`open` for stroke.io whose writes to new files fail with ENOSPC after `room` bytes."""

    def __init__(self, room: int = 0, when: Callable[[str], bool] = lambda name: True) -> None:
        self.room, self.when = room, when

    def __call__(self, file, mode="r", *args, **kwargs):
        handle = open(file, mode, *args, **kwargs)  # noqa: SIM115 - wrapped and returned
        if "w" not in mode or not self.when(str(file)):
            return handle
        room = [self.room]
        write = handle.write

        def limited(data):
            if len(data) > room[0]:
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
            room[0] -= len(data)
            return write(data)

        handle.write = limited
        return handle


@case
def disk_full_keeps_the_previous_file(tmp_path, get):
    atomic_write_json(tmp_path / "metrics.json", {"good": 1})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stroke.io, "open", _FullDisk(room=3), raising=False)
        expect_error(lambda: atomic_write_json(tmp_path / "metrics.json", {"new": 2}), 5,
                     "metrics.json", "No space left", "previous metrics.json is kept")  # fmt: skip
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"good": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


@case
def disk_full_status_json_still_says_why(tmp_path, get):
    write_status(tmp_path, "running")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stroke.io, "open", _FullDisk(), raising=False)
        write_status(tmp_path, "failed", error="StorageError: disk full", traceback="x" * 9000)
    assert read_status(tmp_path)["error"] == "StorageError: disk full"


@case
def disk_full_during_training_keeps_last_ckpt(tmp_path, get):
    """ENOSPC when last.ckpt of epoch 1 is written: epoch 0's stays, the run says why."""
    run_dir = tmp_path / "run"
    full = _FullDisk(when=lambda name: ".last.ckpt." in name and (run_dir / "epoch1").exists())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stroke.io, "open", full, raising=False)
        status = _train(
            get,
            tmp_path,
            "trainer.max_epochs=2",
            "model=cnn_small",
            "+callbacks.mark._target_=faults.MarkEpoch",
            f"+callbacks.mark.path={run_dir / 'epoch1'}",
            "+callbacks.mark.epoch=1",
        )
    line = expect_cli(
        status, 5, "last.ckpt", "No space left on device", "previous last.ckpt is kept"
    )
    assert line
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    record = read_status(run_dir)
    assert record["status"] == "failed" and "No space left" in record["error"]


@case
def disk_read_only_run_directory_before_training(tmp_path, get):
    def read_only(file, mode="r", *args, **kwargs):
        if "w" in mode and ".write-test-" in str(file):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return open(file, mode, *args, **kwargs)  # noqa: SIM115

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stroke.io, "open", read_only, raising=False)
        expect_error(lambda: check_writable(tmp_path / "run"), 5, "Read-only file system")


@case
def disk_without_room_for_a_checkpoint(tmp_path, get):
    usage = shutil.disk_usage(tmp_path)._replace(free=10 * 2**20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stroke.io.shutil, "disk_usage", lambda path: usage)
        expect_error(lambda: check_writable(tmp_path, needed_bytes=50 * 2**20), 5,
                     "10 MB free", "need about 50 MB")  # fmt: skip


@case
def disk_write_into_a_file_path(tmp_path, get):
    (tmp_path / "file").write_text("x")
    expect_error(lambda: atomic_write_text(tmp_path / "file" / "metrics.json", "{}"), 5,
                 "metrics.json")  # fmt: skip


@pytest.mark.parametrize("run_case", CASES, ids=[fn.__name__ for fn in CASES])
def test_corpus(run_case, tmp_path, request):
    run_case(tmp_path, request.getfixturevalue)


def test_the_corpus_has_at_least_40_cases():
    assert len(CASES) >= 40
