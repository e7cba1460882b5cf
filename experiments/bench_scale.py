"""Scale benchmark: time and peak memory of every stage before and around training, by size.

    python experiments/bench_scale.py                       # 1k and 10k images, 100 and 1,000 runs
    python experiments/bench_scale.py --sizes 1000 10000 100000 --listing 1000000 \\
        --runs 100 1000 --startup --out experiments/scale_table.md

Each size is the phantom (`stroke-synth`, 3 slices a patient, 128 px; written once under
--data-dir, default $STROKE_HOME/scale or /tmp/stroke_scale) measured in a fresh process,
stage after stage: listing and labelling, patient splits, 5-fold assignment, the cache
build (cold) and its reuse (warm), the leakage check (hashing every image once, the band
search, the exhaustive search as reference up to --exhaustive-max, and the check as a
cached run does it), the datamodule's whole set-up with a warm cache, loader throughput,
training steps (--steps, reported per image and as the epoch they extrapolate to) and the
evaluation with its 1,000-resample bootstrap on predictions for the test split. `--listing`
sizes are synthetic paths (hard links to a few phantom slices) taken through listing,
splits and folds only; `--runs` counts are run directories read by `stroke-runs`;
`--startup` adds a fresh `stroke-train` from launch to its first step, cache built.

Memory: `heap` is the peak growth of the process's anonymous memory during the stage
(sampled every 10 ms), what the stage itself allocates; `RSS` the process's peak resident
set during the stage (reset before each stage through /proc/self/clear_refs), which also
counts the pages of memory-mapped files it touched (the image cache, the stored
thumbnails): shared with other processes and reclaimable. The growth exponent k fits
cost ~ n^k between the two largest sizes measured.
Prints one markdown table (also to --out) with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLICES = 3
#: Phantom slices hard-linked into the synthetic listing (ext4 allows 65,000 links a file).
_LINK_SOURCES = 64


# -- measuring one stage ------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class HeapWatch:
    """Samples this process's anonymous resident memory (heap, not mapped files) in a thread."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.every_s, self.peak_kb = every_s, _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))

    def __enter__(self) -> HeapWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))


class Stages:
    """Times stages and records their peak memory; `rows` is what the worker prints."""

    def __init__(self, size: int, kind: str) -> None:
        self.size, self.kind = size, kind
        self.rows: list[dict] = []

    @contextmanager
    def stage(self, name: str, per: int | None = None, note: str = ""):
        """Time the block as stage `name`; `per`: images the block handled (a rate stage)."""
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        start_kb, heap_kb = _status_kb("VmRSS"), _status_kb("RssAnon")
        started = time.perf_counter()
        record: dict = {"note": note}
        with HeapWatch() as heap:
            yield record
        seconds = time.perf_counter() - started
        peak_kb = _status_kb("VmHWM")
        row = {
            "stage": name,
            "kind": self.kind,
            "size": self.size,
            "seconds": seconds,
            "peak_mb": peak_kb / 1024,
            "growth_mb": (peak_kb - start_kb) / 1024,
            "heap_mb": (heap.peak_kb - heap_kb) / 1024,
            "load": os.getloadavg()[0],
        }
        if per:
            row["per_item_s"] = seconds / per
        # what the block measured itself; notes may be filled in after it (untimed)
        row.update(record)
        record.update(row)
        self.rows.append(record)
        print(f"# {self.kind} {self.size}: {name} {seconds:.2f} s", file=sys.stderr, flush=True)

    def emit(self) -> None:
        """The rows as JSON lines on stdout, for the driver."""
        for row in self.rows:
            print(json.dumps(row), flush=True)


# -- the data -----------------------------------------------------------------------------
def phantom(data_dir: Path, size: int) -> Path:
    """The phantom of `size` images (ceil(size / 3) patients x 3 slices), written once."""
    from stroke.synth import PhantomConfig, generate_phantom

    root = data_dir / f"phantom_{size}"
    patients = max(3, math.ceil(size / SLICES))
    generate_phantom(root, PhantomConfig(n_patients=patients, slices_per_patient=SLICES))
    return root


def synthetic_listing(data_dir: Path, size: int, source_root: Path) -> Path:
    """`size` image paths in class folders: hard links to a few phantom slices, made once."""
    root = data_dir / f"listing_{size}"
    done = root / ".complete"
    if done.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    slices = sorted(source_root.glob("normal/*.png"))[:_LINK_SOURCES]
    classes = ("normal", "hemorrhagic", "ischemic")
    for label in classes:
        (root / label).mkdir(parents=True)
    for i in range(size):
        patient, slice_index = divmod(i, SLICES)
        label = classes[patient % len(classes)]
        target = root / label / f"P{patient:07d}_s{slice_index:02d}.png"
        os.link(slices[i % len(slices)], target)
    done.touch()
    return root


def compose(overrides: list[str], run_dir: Path):
    """The config `stroke-train <overrides>` runs with, its run directory set to `run_dir`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from stroke.config import CONFIG_MODULE

    with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def train_overrides(args: argparse.Namespace, root: Path, cache_dir: Path) -> list[str]:
    return [
        f"data.root={root}",
        f"data.cache_dir={cache_dir}",
        f"data.image_size={args.image_size}",
        f"model={args.model}",
        "trainer.accelerator=cpu",
        "logger=none",
        "~callbacks.rich_progress_bar",
        "~callbacks.gradcam",
    ]


# -- the workers: one process per size ----------------------------------------------------
def listing_stages(stages: Stages, source, folds: bool = True) -> list:
    """Listing and labelling, patient splits and folds, as the datamodule runs them."""
    from stroke.data.folds import assign_fold
    from stroke.data.samples import apply_class_map, resolve_classes
    from stroke.data.splits import assign_splits, check_no_patient_overlap

    with stages.stage("listing and labelling", note="list, stat for empty files, classes"):
        samples = source.load()
        empty = [s.path for s in samples if s.path.stat().st_size == 0]
        assert not empty, empty[:3]
        samples = apply_class_map(samples, None)
        resolve_classes(samples, None, repr(source))
    with stages.stage("patient splits", note="stratified, seeded; overlap check"):
        split = assign_splits(samples, 0.15, 0.15, 42)
        check_no_patient_overlap(split)
    if folds:
        with stages.stage("5-fold assignment", note="StratifiedGroupKFold, fold 0"):
            assign_fold(samples, 5, 0, 0.15, 0.15, 42)
    return split


def images_worker(args: argparse.Namespace) -> None:
    """Every stage on the phantom of `args.n` images."""
    import numpy as np

    from stroke.warnings_filter import quiet_third_party_warnings

    quiet_third_party_warnings()
    from hydra.utils import instantiate

    from stroke.bench.loops import lightning_loop
    from stroke.bench.probes import loader_throughput
    from stroke.build import build_datamodule, build_model, build_trainer
    from stroke.data.cache import ImageCache
    from stroke.data.hash_index import bucket_stats
    from stroke.data.leakage import MAX_HASH_DISTANCE, find_near_duplicates
    from stroke.data.leakage_store import check_leakage, stored_signatures

    n, stages = args.n, Stages(args.n, "images")
    root = phantom(args.data_dir, n)
    work = args.data_dir / "work" / f"images_{n}"
    shutil.rmtree(work, ignore_errors=True)
    cfg = compose(train_overrides(args, root, work / "cache"), work / "run")
    dm = build_datamodule(cfg)
    samples = listing_stages(stages, dm.source)

    with stages.stage("cache build (cold)", per=n) as record:
        cache = ImageCache(dm.loader, samples, work / "cache", progress=False)
    record["note"] = f"decode + letterbox every image: {cache.nbytes / 1e6:,.0f} MB"
    with stages.stage("cache reuse (warm)", note="key: stat every file; map the store"):
        cache = ImageCache(dm.loader, samples, work / "cache", progress=False)
        assert not cache.built
    note = "first run: hash every image, every pair within 12 bits; stored by the cache"
    with stages.stage("leakage: signatures and pairs", per=n, note=note):
        bits, thumbs = stored_signatures(cache, samples)
    with stages.stage("leakage: band-index search, split by split") as record:
        found = find_near_duplicates(samples, bits, thumbs)
    record["note"] = f"{len(found)} pairs; {bucket_stats(bits, MAX_HASH_DISTANCE).describe()}"
    if n <= args.exhaustive_max:
        with stages.stage("leakage: exhaustive search (reference)", note="same pairs"):
            reference = find_near_duplicates(samples, bits, thumbs, method="exhaustive")
        assert reference == found
    note = "what every later run does: load, keep the pairs its split separates"
    with stages.stage("leakage check, signatures and pairs stored", note=note):
        check_leakage(samples, cache, "warn")
    del cache, bits, thumbs

    dm = build_datamodule(cfg)
    with stages.stage("datamodule set-up (cache warm)", note="list, split, cache, leakage"):
        dm.setup("fit")
    batches = args.loader_batches
    images = batches * dm.batch_size
    with stages.stage("loader throughput", per=images, note=f"{batches} batches, augmented"):
        loader_throughput(dm.train_dataloader(), batches)
    module = build_model(cfg, dm)

    def trainer(callbacks):
        return build_trainer(
            cfg,
            callbacks,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            max_epochs=1,
        )

    steps = args.steps
    epoch_images = len(dm.datasets["train"])
    note = f"{steps} steps of {args.model}, batch {dm.batch_size}; epoch of {epoch_images}"
    with stages.stage("training steps", note=note) as record:
        timing = lightning_loop(trainer, module, 2, steps, datamodule=dm)
        # the timed window, not the fit's start: per image, and the epoch it extrapolates to
        record["per_item_s"] = sum(timing.step_seconds) / sum(timing.step_images)
        record["epoch_s"] = record["per_item_s"] * epoch_images

    from stroke.evaluation.evaluate import EvaluationConfig, SplitPredictions
    from stroke.evaluation.report import write_evaluation

    rng = np.random.default_rng(0)

    def predictions(split: str) -> SplitPredictions:
        dataset = dm.datasets[split]
        targets = np.asarray(dataset.targets)
        logits = rng.normal(size=(len(targets), dm.num_classes))
        logits[np.arange(len(targets)), targets] += 2.0  # a model that is mostly right
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return SplitPredictions(
            split,
            [s.path.as_posix() for s in dataset.samples],
            [s.patient_id for s in dataset.samples],
            targets,
            probs,
        )

    test, val = predictions("test"), predictions("val")
    config = instantiate(cfg.evaluation)
    assert isinstance(config, EvaluationConfig)
    note = f"{len(test)} test images, {config.n_boot} resamples, report + figures"
    with stages.stage("evaluation with bootstrap", per=len(test), note=note):
        write_evaluation(work / "eval", test, val, dm.class_names, config)

    if args.startup:
        from stroke.bench.startup import time_to_first_step

        note = "fresh process, cache warm; peak of that process"
        with stages.stage("stroke-train to its first step", note=note) as record:
            first = time_to_first_step(train_overrides(args, root, work / "cache"), work / "start")
            record.update(seconds=first["seconds"], peak_mb=first["peak_rss_mb"], heap_mb=None)
    shutil.rmtree(work / "eval", ignore_errors=True)
    stages.emit()


def listing_worker(args: argparse.Namespace) -> None:
    """Listing, splits and folds of `args.n` synthetic paths (nothing decoded)."""
    from stroke.data import FolderSource
    from stroke.warnings_filter import quiet_third_party_warnings

    quiet_third_party_warnings()
    source_root = phantom(args.data_dir, 1000)
    root = synthetic_listing(args.data_dir, args.n, source_root)
    stages = Stages(args.n, "listing")
    listing_stages(stages, FolderSource(root, patient_regex=r"^(P\d+)_"))
    stages.emit()


def runs_worker(args: argparse.Namespace) -> None:
    """`stroke-runs` (collect, table, markdown) over `args.n` run directories."""
    import io
    from contextlib import redirect_stdout

    from omegaconf import OmegaConf

    from stroke.cli.runs import print_table
    from stroke.runs import write_status

    root = args.data_dir / "work" / f"runs_{args.n}"
    shutil.rmtree(root, ignore_errors=True)
    cfg = compose(["model.optimizer.lr=0.001"], root / "compose")
    config_yaml = OmegaConf.to_yaml(cfg, resolve=False)  # as Hydra writes .hydra/config.yaml
    for i in range(args.n):
        run = root / "multirun" / str(i)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text(config_yaml)
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- model.optimizer.lr={1e-3 * (1 + i % 97):.6f}\n- seed={i}\n"
        )
        (run / "tensorboard").mkdir()
        metrics = {"val/f1_best": (i % 89) / 89, "test/accuracy": (i % 83) / 83, "test/f1": 0.5}
        summary = {"metrics": metrics, "epochs": 18, "wall_time_s": 180.0 + i}
        (run / "metrics.json").write_text(json.dumps(summary))
        write_status(run, "finished")
    stages = Stages(args.n, "runs")
    query = OmegaConf.create(
        {"path": str(root / "multirun"), "sort": "best", "order": None, "metrics": None}
    )
    query.update({"format": "markdown", "plot": None})
    note = "find, read every run, sort, markdown"
    with stages.stage("stroke-runs table", note=note), redirect_stdout(io.StringIO()) as out:
        assert print_table(query) == 0
    assert out.getvalue().count("\n") >= args.n
    shutil.rmtree(root, ignore_errors=True)
    stages.emit()


# -- the driver ---------------------------------------------------------------------------
def run_worker(kind: str, size: int, args: argparse.Namespace) -> list[dict]:
    """One fresh process measuring `kind` at `size`; its JSON rows."""
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(size)]
    for key in ("data_dir", "image_size", "model", "steps", "loader_batches", "exhaustive_max"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.startup:
        cmd.append("--startup")
    print(f"# {kind} at {size:,}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"the {kind} worker at {size} failed (exit {result.returncode})")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def exponent(rows: list[dict], value: Callable[[dict], float]) -> str:
    """k of cost ~ n^k between the two largest sizes measured."""
    points = sorted((r["size"], value(r)) for r in rows if value(r) == value(r) and value(r) > 0)
    if len(points) < 2:
        return "-"
    (n1, t1), (n2, t2) = points[-2], points[-1]
    return f"{math.log(t2 / t1) / math.log(n2 / n1):.2f}"


def cost(row: dict) -> float:
    """What grows with n: the stage's seconds, or the extrapolated epoch of a rate stage."""
    if "epoch_s" in row:
        return row["epoch_s"]
    if row["stage"] in ("loader throughput", "evaluation with bootstrap") and "per_item_s" in row:
        # per image x images of the stage at this size: the stage's cost at full size
        return row["per_item_s"] * row["size"]
    return row["seconds"]


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    if row["stage"] == "loader throughput":
        text = f"{1 / row['per_item_s']:,.0f} img/s"
    elif "epoch_s" in row:
        text = f"{row['per_item_s'] * 1000:.1f} ms/img ({row['epoch_s']:,.0f} s/epoch)"
    else:
        text = f"{row['seconds']:.2f} s"
    heap = row.get("heap_mb")
    memory = f"heap +{heap:,.0f} MB, " if heap is not None else ""
    return f"{text}, {memory}RSS {row['peak_mb']:,.0f} MB"


def markdown(rows: list[dict], loads: tuple[str, str]) -> str:
    """The table: a row per stage, a column per size, growth exponents."""
    stages: dict[tuple[str, str], dict[int, dict]] = {}
    for row in rows:
        stages.setdefault((row["kind"], row["stage"]), {})[row["size"]] = row
    sizes = {kind: sorted({r["size"] for r in rows if r["kind"] == kind}) for kind in
             ("images", "listing", "runs")}  # fmt: skip
    lines = [f"load average (1, 5, 15 min): before {loads[0]}; after {loads[1]}", ""]
    for kind, unit in (("images", "images"), ("listing", "paths"), ("runs", "run dirs")):
        if not sizes[kind]:
            continue
        header = [f"{s:,} {unit}" for s in sizes[kind]]
        lines += [
            f"| stage ({kind}) | {' | '.join(header)} | k | note |",
            "| --- |" + " ---: |" * len(header) + " ---: | --- |",
        ]
        for (row_kind, stage), by_size in stages.items():
            if row_kind != kind:
                continue
            cells = [_cell(by_size.get(s)) for s in sizes[kind]]
            k = exponent(list(by_size.values()), cost)
            note = by_size[max(by_size)]["note"]  # the largest size's
            lines.append(f"| {stage} | {' | '.join(cells)} | {k} | {note} |")
        lines.append("")
    return "\n".join(lines)


def _uptime() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--listing", type=int, nargs="*", default=[], help="synthetic paths")
    parser.add_argument("--runs", type=int, nargs="*", default=[100, 1000], help="run dirs")
    default_dir = Path(os.environ.get("STROKE_HOME") or "/tmp/stroke_scale") / "scale"
    parser.add_argument("--data-dir", type=Path, default=default_dir)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--loader-batches", type=int, default=100)
    parser.add_argument("--exhaustive-max", type=int, default=10000)
    parser.add_argument("--startup", action="store_true", help="time stroke-train's start")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--worker", choices=("images", "listing", "runs"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        {"images": images_worker, "listing": listing_worker, "runs": runs_worker}[args.worker](args)
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    before = _uptime()
    rows = []
    for kind, sizes in (("images", args.sizes), ("listing", args.listing), ("runs", args.runs)):
        for size in sizes:
            rows += run_worker(kind, size, args)
    table = markdown(rows, (before, _uptime()))
    command = "python experiments/bench_scale.py " + " ".join(sys.argv[1:])
    text = f"{table}\ncommand: `{command}`\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
