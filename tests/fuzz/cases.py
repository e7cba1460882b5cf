"""The harness's cases: one bad input and the command that meets it.

Each `Case` prepares its input in a folder of its own, beside good data copied from a
`Workspace` (built once a run: a folder of PNGs, a DICOM tree, NIfTI volumes, a label CSV,
a trained checkpoint), and names the command, its arguments, the files an exit 0 promises
and what a loud handling must name.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dicom_factory import synthetic_ct_tree

from . import inputs

#: shrinks any stroke-train run to seconds on 2 cores (as tests/conftest.py's TINY)
TINY = [
    "data.image_size=32", "data.num_workers=0", "data.batch_size=8", "trainer.max_epochs=1",
    "trainer.accelerator=cpu", "trainer.devices=1", "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
    "~callbacks.rich_progress_bar", "~callbacks.model_summary", "model=cnn_small",
    "evaluation.n_boot=10", "data.leakage=off",
]  # fmt: skip
#: the files a finished stroke-train run promises
RUN_FILES = ("metrics.json", "status.json", "checkpoints/last.ckpt", "eval/report.md")
BAD = "p999_bad"


@dataclass(frozen=True)
class Prepared:
    """What a case's preparation made: the command's arguments and what to check after."""

    args: list[str]
    promised: list[Path] = field(default_factory=list)
    mentions: str | None = None


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    #: the command's module under stroke.cli (train, predict, eval, serve, cv, runs)
    command: str
    prepare: Callable[[Workspace, Path], Prepared]
    #: part of the subset `make test` runs
    fast: bool = False
    timeout: float = 240.0

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"


#: another checkout of stroke to run the commands from (the harness's counts before a fix)
CHECKOUT_ENV = "STROKE_FUZZ_CHECKOUT"


def python_env(root: Path) -> dict[str, str]:
    """The environment of a case's process: this checkout's stroke (or $STROKE_FUZZ_CHECKOUT's),
    a private image cache."""
    repo = os.environ.get(CHECKOUT_ENV) or str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "STROKE_CACHE_DIR": str(root / "cache")}


class Workspace:
    """The good data every case starts from, made on first use under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @functools.cached_property
    def folder_data(self) -> Path:
        """`<class>/<patient>_<i>.png`: 8 normal and 8 stroke images, one patient each."""
        root = self.root / "folder_data"
        if not root.is_dir():
            rng = np.random.default_rng(0)
            for label in ("normal", "stroke"):
                for i in range(8):
                    image = rng.integers(0, 60, (24, 24), dtype=np.uint8)
                    if label == "stroke":
                        image[4:12, 4:12] = 220
                    inputs._png(root / label / f"p{i:03d}_{label}.png", image)
        return root

    @functools.cached_property
    def dicom_data(self) -> Path:
        root = self.root / "dicom_data"
        if not root.is_dir():
            synthetic_ct_tree(root, patients=8, slices=3, size=32)
        return root

    @functools.cached_property
    def nifti_data(self) -> Path:
        root = self.root / "nifti_data"
        if not root.is_dir():
            for label in ("normal", "stroke"):
                for i in range(4):
                    inputs.write_volume(root / label / f"v{i}.nii.gz", inputs.volume(3, 16, i))
        return root

    @functools.cached_property
    def checkpoint(self) -> Path:
        """A stroke-train checkpoint of the folder data (trained once, a few seconds)."""
        run = self.root / "trained"
        last = run / "checkpoints" / "last.ckpt"
        if not last.is_file():
            command = [sys.executable, "-m", "stroke.cli.train", *TINY, "data=folder",
                       f"data.root={self.folder_data}", f"hydra.run.dir={run}"]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True,
                                  env=python_env(self.root), timeout=600)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"the workspace's training failed:\n{done.stderr[-3000:]}")
        return last

    @functools.cached_property
    def predict_inputs(self) -> Path:
        folder = self.root / "predict_inputs"
        if not folder.is_dir():
            for path in sorted(self.folder_data.rglob("*.png"))[:2]:
                folder.mkdir(exist_ok=True)
                shutil.copy(path, folder / path.name)
        return folder


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def _written(folder: Path, write: inputs.Writer, path: Path) -> str:
    """Write the bad file with `write(path)`; the name of what it made (for `mentions`)."""
    before = set(folder.iterdir())
    write(path)
    made = sorted(p.name for p in set(folder.iterdir()) - before if not p.name.startswith("."))
    return made[0] if made else path.name


def _train_run(case_dir: Path) -> tuple[list[str], list[Path]]:
    run = case_dir / "run"
    return [f"hydra.run.dir={run}"], [run / name for name in RUN_FILES]


# -- bad files in training data ------------------------------------------------------------
def _image_case(write: inputs.Writer, workers: bool) -> Callable[[Workspace, Path], Prepared]:
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        data = _copy(ws.folder_data, case_dir / "data")
        mention = _written(data / "stroke", write, data / "stroke" / f"{BAD}.png")
        loading = ["data.cache=false", "data.num_workers=1"] if workers else []
        run, promised = _train_run(case_dir)
        return Prepared([*TINY, "data=folder", f"data.root={data}", *loading, *run],
                        promised, mention)  # fmt: skip

    return prepare


def _dicom_case(write: inputs.Writer) -> Callable[[Workspace, Path], Prepared]:
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        data = _copy(ws.dicom_data, case_dir / "data")
        folder = data / "hemorrhage" / "SYN01"
        mention = _written(folder, write, folder / "IM999.dcm")
        run, promised = _train_run(case_dir)
        return Prepared([*TINY, "data=dicom", f"data.root={data}", "data.val_fraction=0.25",
                         "data.test_fraction=0.25", *run], promised, mention)  # fmt: skip

    return prepare


def _nifti_case(write: inputs.Writer) -> Callable[[Workspace, Path], Prepared]:
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        data = _copy(ws.nifti_data, case_dir / "data")
        mention = _written(data / "stroke", write, data / "stroke" / "bad.nii.gz")
        run, promised = _train_run(case_dir)
        return Prepared([*TINY, "data=nifti", f"data.root={data}", "data.val_fraction=0.25",
                         "data.test_fraction=0.25", *run], promised, mention)  # fmt: skip

    return prepare


def _csv_case(name: str) -> Callable[[Workspace, Path], Prepared]:
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        images = sorted(ws.folder_data.rglob("*.png"))
        (case_dir / "images").mkdir(parents=True)
        for path in images:
            shutil.copy(path, case_dir / "images" / path.name)
        paths = [f"images/{p.name}" for p in images]
        content = inputs.csv_variants(paths, [p.parent.name for p in images])[name]
        (case_dir / "labels.csv").write_bytes(content)
        mention = {"missing_image_row": "nope.png", "path_outside_root": "passwd"}.get(
            name, images[0].name
        )
        run, promised = _train_run(case_dir)
        return Prepared([*TINY, "data=csv", f"data.root={case_dir}", *run], promised, mention)

    return prepare


def data_cases() -> Iterator[Case]:
    for name, write in inputs.IMAGES.items():
        yield Case("images", name, "train", _image_case(write, False), fast=name == "bomb_png")
    for name in ("truncated_png", "random_bytes", "bomb_png", "fifo_named_png"):
        write = inputs.IMAGES[name]
        yield Case("images", f"{name}_in_a_worker", "train", _image_case(write, True),
                   fast=name == "truncated_png")  # fmt: skip
    for name, write in inputs.DICOMS.items():
        yield Case("dicom", name, "train", _dicom_case(write))
    for name, write in inputs.NIFTIS.items():
        yield Case("nifti", name, "train", _nifti_case(write))
    for name in inputs.csv_variants(["a"], ["b"]):
        yield Case("csv", name, "train", _csv_case(name), fast=name == "utf16_bom")


# -- checkpoints ---------------------------------------------------------------------------
def _checkpoint_case(name: str, command: str) -> Callable[[Workspace, Path], Prepared]:
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        path = case_dir / f"{name}.ckpt"
        inputs.checkpoint_variants(ws.checkpoint)[name](path)
        run = case_dir / "run"
        if command == "predict":
            out = case_dir / "predictions.csv"
            args = [f"inputs={ws.predict_inputs}", f"output_csv={out}", "num_workers=0"]
            return Prepared([f"ckpt_path={path}", *args, f"hydra.run.dir={run}"], [out])
        if command == "train":
            return Prepared([*TINY, "data=folder", f"data.root={ws.folder_data}",
                             f"ckpt_path={path}", f"hydra.run.dir={run}"],
                            [run / f for f in RUN_FILES])  # fmt: skip
        return Prepared([f"ckpt_path={path}", f"hydra.run.dir={run}"], [run / "report.md"])

    return prepare


def checkpoint_cases() -> Iterator[Case]:
    every = ("truncated_ckpt", "empty_ckpt", "random_ckpt", "json_named_ckpt",
             "bare_state_dict", "other_lightning_project", "runs_code_when_unpickled",
             "zip_without_data", "safetensors_file", "future_format_version",
             "head_of_another_shape", "no_hyper_parameters", "folder_named_ckpt",
             "tensor_not_dict")  # fmt: skip
    for name in every:
        yield Case("checkpoints", f"predict/{name}", "predict", _checkpoint_case(name, "predict"))
    for name in ("truncated_ckpt", "other_lightning_project", "head_of_another_shape"):
        yield Case("checkpoints", f"eval/{name}", "eval", _checkpoint_case(name, "eval"))
        yield Case("checkpoints", f"serve/{name}", "serve", _checkpoint_case(name, "serve"))
    for name in ("truncated_ckpt", "bare_state_dict"):
        yield Case("checkpoints", f"train_resume/{name}", "train", _checkpoint_case(name, "train"))


# -- folders and paths given to the commands --------------------------------------------------
def _folder_case(
    command: str, make: Callable[[Workspace, Path], list[str]], mentions: str | None = None
):
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        run = case_dir / "run"
        args = make(ws, case_dir)
        if command == "train":
            return Prepared([*TINY, *args, f"hydra.run.dir={run}"], [run / f for f in RUN_FILES])
        if command == "predict":
            out = case_dir / "predictions.csv"
            return Prepared([f"ckpt_path={ws.checkpoint}", *args, f"output_csv={out}",
                             "num_workers=0", f"hydra.run.dir={run}"], [out])  # fmt: skip
        return Prepared(args, [], mentions)

    return prepare


def _loop_folder(case_dir: Path) -> Path:
    folder = case_dir / "looped"
    folder.mkdir()
    (folder / "inner").symlink_to(folder)
    return folder


def _one_class(ws: Workspace, case_dir: Path) -> list[str]:
    data = _copy(ws.folder_data, case_dir / "data")
    shutil.rmtree(data / "stroke")
    return ["data=folder", f"data.root={data}"]


def _sweep_with_corrupt_metrics(ws: Workspace, case_dir: Path) -> list[str]:
    for fold in range(2):
        (case_dir / "sweep" / str(fold)).mkdir(parents=True)
        (case_dir / "sweep" / str(fold) / "metrics.json").write_text('{"test/acc": 0.5' * fold)
    return [f"path={case_dir / 'sweep'}"]


def _runs_with_corrupt_status(ws: Workspace, case_dir: Path) -> list[str]:
    run = case_dir / "runs" / "a"
    run.mkdir(parents=True)
    (run / "status.json").write_bytes(b"\xff\xfe{not json")
    (run / "metrics.json").write_text("[1, 2")
    return [f"path={case_dir / 'runs'}"]


def folder_cases() -> Iterator[Case]:
    train = {
        "data_root_missing": lambda ws, d: ["data=folder", f"data.root={d / 'nowhere'}"],
        "data_root_is_a_file": lambda ws, d: ["data=folder", f"data.root={ws.checkpoint}"],
        "data_root_empty": lambda ws, d: ["data=folder", f"data.root={_mkdir(d / 'empty')}"],
        "data_root_one_class": _one_class,
        "data_root_symlink_loop": lambda ws, d: ["data=folder", f"data.root={_loop_folder(d)}"],
        "csv_missing": lambda ws, d: ["data=csv", f"data.root={_mkdir(d / 'no_csv')}"],
    }
    for name, make in train.items():
        yield Case("folders", f"train/{name}", "train", _folder_case("train", make),
                   fast=name == "data_root_missing")  # fmt: skip
    predict = {
        "inputs_missing": lambda ws, d: [f"inputs={d / 'nowhere'}"],
        "inputs_empty_folder": lambda ws, d: [f"inputs={_mkdir(d / 'empty')}"],
        "inputs_only_text": lambda ws, d: [f"inputs={_text_folder(d)}"],
        "inputs_glob_matches_nothing": lambda ws, d: [f"inputs={d / '*.png'}"],
        "inputs_symlink_loop": lambda ws, d: [f"inputs={_loop_folder(d)}"],
        "inputs_fifo": lambda ws, d: [f"inputs={_fifo_input(d)}"],
    }
    for name, make in predict.items():
        yield Case("folders", f"predict/{name}", "predict", _folder_case("predict", make))
    yield Case("folders", "cv/corrupt_metrics_json", "cv",
               _folder_case("cv", _sweep_with_corrupt_metrics))  # fmt: skip
    yield Case("folders", "runs/corrupt_status_json", "runs",
               _folder_case("runs", _runs_with_corrupt_status, "cannot be read"))  # fmt: skip


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _text_folder(case_dir: Path) -> Path:
    folder = _mkdir(case_dir / "texts")
    (folder / "notes.txt").write_text("no images here")
    return folder


def _fifo_input(case_dir: Path) -> Path:
    path = case_dir / "pipe.png"
    os.mkfifo(path)
    return path


# -- out-of-range values of every declared key --------------------------------------------------
def bad_value(constraint) -> object:
    """A value the constraint refuses (stroke.parameters' kinds)."""
    from stroke.parameters import Boolean, Choice, Integer, Number, Probability

    if isinstance(constraint, Integer):
        if constraint.minimum is not None:
            return constraint.minimum - 1
        return constraint.maximum + 1 if constraint.maximum is not None else "abc"
    if isinstance(constraint, Probability):
        return 1.5
    if isinstance(constraint, Number):
        low = constraint.minimum if constraint.minimum is not None else constraint.above
        if low is not None:
            return low - 1
        high = constraint.maximum if constraint.maximum is not None else constraint.below
        return high + 1 if high is not None else "abc"
    if isinstance(constraint, Boolean):
        return 2
    if isinstance(constraint, Choice):
        return "not_a_choice"
    raise TypeError(f"no bad value for {constraint!r}")


def _parameter_case(command: str, key: str, value: object):
    def prepare(ws: Workspace, case_dir: Path) -> Prepared:
        override = f"++{key}={value}"
        run = f"hydra.run.dir={case_dir / 'run'}"
        if command == "train":
            # nothing to read: the value must be refused before the data would be looked at
            return Prepared([*TINY, f"data.root={case_dir / 'nowhere'}", override, run])
        inputs_ = [f"inputs={ws.predict_inputs}"] if command == "predict" else []
        return Prepared([f"ckpt_path={ws.checkpoint}", *inputs_, override, run])

    return prepare


#: stroke-serve's settings (ServeSettings checks them) with a value out of range
SERVE_SETTINGS = {"serve.max_files": 0, "serve.max_file_mb": -1, "serve.max_pixels": 0,
                  "serve.max_queue": 0, "serve.max_batch": 0}  # fmt: skip


def parameter_cases() -> Iterator[Case]:
    from stroke.parameters import EVAL, PREDICT, SERVE
    from stroke.runs.preflight import training_constraints

    declared = {"train": training_constraints(), "predict": PREDICT, "serve": SERVE, "eval": EVAL}
    for command, constraints in declared.items():
        for key, constraint in constraints.items():
            fast = key == "model.optimizer.lr"
            yield Case("parameters", f"{command}/{key}", command,
                       _parameter_case(command, key, bad_value(constraint)), fast=fast)  # fmt: skip
    for key, value in SERVE_SETTINGS.items():
        yield Case("parameters", f"serve/{key}", "serve", _parameter_case("serve", key, value))


def all_cases() -> list[Case]:
    """Every case, in a fixed order."""
    return [*data_cases(), *checkpoint_cases(), *folder_cases(), *parameter_cases()]
