"""Benchmark: wall time of one sweep run trial after trial and with trials side by side.

CPU (default): a 4-trial grid, sequential (Hydra's basic launcher, one process) against
`hydra/launcher=parallel` with 2 trials side by side, each pinned to its own cores:

    python experiments/bench_sweep.py
    python experiments/bench_sweep.py --trials 4 --parallel 2 --process-baseline

GPU: the same grid sequentially on one GPU against several trials packed on that GPU
(`hydra.launcher.gpus=[0] hydra.launcher.trials_per_gpu=K`):

    python experiments/bench_sweep.py --gpu --trials 8 --parallel 4

Prints the wall times and their ratio; the run directories stay under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stroke.synth import PhantomConfig, generate_phantom  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="pack trials on GPU 0 instead of CPU")
    parser.add_argument("--trials", type=int, default=None, help="trials in the sweep (4; GPU 8)")
    parser.add_argument("--parallel", type=int, default=None, help="side by side (2; GPU 4)")
    parser.add_argument("--model", default=None, help="backbone (cnn_small; GPU resnet18)")
    parser.add_argument("--image-size", type=int, default=None, help="pixels (64; GPU 128)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (2; GPU 5)")
    parser.add_argument(
        "--process-baseline",
        action="store_true",
        help="also time the parallel launcher with 1 trial at a time (its per-process cost)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_sweep")
    args = parser.parse_args()
    gpu = args.gpu
    args.trials = args.trials or (8 if gpu else 4)
    args.parallel = args.parallel or (4 if gpu else 2)
    args.model = args.model or ("resnet18" if gpu else "cnn_small")
    args.image_size = args.image_size or (128 if gpu else 64)
    args.epochs = args.epochs or (5 if gpu else 2)
    return args


def sweep_command(args: argparse.Namespace, data_root: Path, sweep_dir: Path) -> list[str]:
    """The grid: `trials` learning rates, everything else fixed."""
    lrs = ",".join(f"{1e-3 / (i + 1):.3g}" for i in range(args.trials))
    return [
        sys.executable, "-m", "stroke.cli.train", "-m",
        f"data.root={data_root}", f"data.image_size={args.image_size}",
        f"model={args.model}", f"model.optimizer.lr={lrs}",
        f"trainer.max_epochs={args.epochs}", "callbacks.early_stopping.patience=1000",
        "~callbacks.rich_progress_bar", "~callbacks.model_summary",
        "trainer=gpu" if args.gpu else "trainer=cpu",
        *([] if args.gpu else ["data.num_workers=0"]),
        f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip


def timed_sweep(name: str, cmd: list[str], sweep_dir: Path, trials: int) -> float:
    """Run one sweep to its end; its wall time in seconds."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    log = sweep_dir.with_suffix(".log")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    print(f"{name}: running ({log})", flush=True)
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - started
    finished = list(sweep_dir.glob("*/metrics.json"))
    if code != 0 or len(finished) != trials:
        sys.exit(f"{name} failed (exit {code}, {len(finished)}/{trials} trials): see {log}")
    mean_trial = sum(json.loads(p.read_text())["wall_time_s"] for p in finished) / trials
    print(f"{name}: {wall:.1f} s (mean trial {mean_trial:.1f} s inside its process)", flush=True)
    return wall


def main() -> None:
    args = parse_args()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    out = args.out / stamp
    data_root = args.out / "phantom"
    generate_phantom(data_root, PhantomConfig(), progress=False)  # no-op when already there
    where = "GPU 0" if args.gpu else f"{len(os.sched_getaffinity(0))} CPU cores"
    print(
        f"{args.trials}-trial sweep: {args.model}, {args.image_size} px, {args.epochs} epochs, "
        f"on {where}"
    )

    sequential = timed_sweep(
        "sequential (basic launcher)",
        sweep_command(args, data_root, out / "sequential"),
        out / "sequential",
        args.trials,
    )
    device = ["hydra.launcher.gpus=[0]"] if args.gpu else ["hydra.launcher.gpus=null"]
    packing = [f"hydra.launcher.trials_per_gpu={args.parallel}"] if args.gpu else []

    def parallel(n: int) -> float:
        sweep_dir = out / f"parallel_{n}"
        launcher = ["hydra/launcher=parallel", f"hydra.launcher.parallel_trials={n}"]
        cmd = sweep_command(args, data_root, sweep_dir) + launcher + device + packing
        label = "1 at a time" if n == 1 else f"{n} side by side"
        return timed_sweep(f"parallel launcher, {label}", cmd, sweep_dir, args.trials)

    one_at_a_time = parallel(1) if args.process_baseline else None
    side_by_side = parallel(args.parallel)

    print()
    print(f"| {args.trials}-trial sweep on {where} | wall time |")
    print("|---|---|")
    print(f"| sequential (basic launcher, one process) | {sequential:.1f} s |")
    if one_at_a_time is not None:
        print(f"| parallel launcher, 1 at a time (a process per trial) | {one_at_a_time:.1f} s |")
    print(f"| parallel launcher, {args.parallel} side by side | {side_by_side:.1f} s |")
    print(f"speed-up, sequential / {args.parallel} side by side: {sequential / side_by_side:.2f}x")


if __name__ == "__main__":
    main()
