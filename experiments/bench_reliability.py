"""What reliability costs: per-image augmentation seeding, atomic checkpoints, the data audit.

    python experiments/bench_reliability.py [data root, default: the phantom]

Prints one table: training-loader throughput with EpochSampler's per-image augmentation
seeding and without it (the same loader, seeding replaced by a no-op), the time to write a
resnet10t training checkpoint with stroke's AtomicCheckpointIO and with Lightning's own
TorchCheckpointIO, and the time of the data audit's walk of the data folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import stroke.data.dataset as dataset_module
from stroke.config import source_checkout
from stroke.data import FolderSource, StrokeDataModule
from stroke.data.audit import left_out_files
from stroke.io import AtomicCheckpointIO
from stroke.models import create_model

REPEATS = 3


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def loader_rate(dm: StrokeDataModule) -> float:
    loader = dm.train_dataloader()
    seconds = best_of(lambda: sum(len(x) for x, _ in loader))
    return len(dm.datasets["train"]) / seconds


def main(root: Path) -> None:
    augmentation = OmegaConf.load(source_checkout() / "conf" / "augmentation" / "medium.yaml")
    dm = StrokeDataModule(
        FolderSource(root, patient_regex=r"^(P\d+)_"),
        image_size=128,
        in_chans=1,
        batch_size=32,
        num_workers=0,
        leakage="off",
        train_transform=instantiate(augmentation),
        cache_dir=Path(tempfile.mkdtemp()) / "images",
    )
    dm.setup("fit")
    original = dataset_module.seed_transform
    seeded, unseeded = 0.0, 0.0
    for _ in range(REPEATS):  # interleaved: a busy machine slows both alike
        seeded = max(seeded, loader_rate(dm))
        dataset_module.seed_transform = lambda transform, seed: None
        try:
            unseeded = max(unseeded, loader_rate(dm))
        finally:
            dataset_module.seed_transform = original

    net = create_model("resnet10t", num_classes=3, in_chans=1)
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.zeros(2, 1, 64, 64)).sum().backward()
    optimizer.step()
    checkpoint = {"state_dict": net.state_dict(), "optimizer_states": [optimizer.state_dict()]}
    folder = Path(tempfile.mkdtemp())
    atomic = best_of(lambda: AtomicCheckpointIO().save_checkpoint(checkpoint, folder / "a.ckpt"))
    lightning_io = AtomicCheckpointIO.__mro__[1]()
    plain = best_of(lambda: lightning_io.save_checkpoint(checkpoint, folder / "b.ckpt"))
    size_mb = (folder / "a.ckpt").stat().st_size / 2**20
    audit = best_of(lambda: left_out_files(dm.source, dm.samples))

    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| what | figure |\n| --- | --- |")
    print(f"| training loader, seeded augmentation (img/s, {len(dm.datasets['train'])} "
          f"images, 128 px, 0 workers) | {seeded:.0f} |")  # fmt: skip
    print(f"| the same without per-image seeding (img/s) | {unseeded:.0f} |")
    print(
        f"| resnet10t checkpoint ({size_mb:.1f} MB), AtomicCheckpointIO (ms) | {atomic * 1e3:.0f} |"
    )
    print(f"| the same, Lightning's TorchCheckpointIO (ms) | {plain * 1e3:.0f} |")
    print(f"| data audit walk of {root} (ms) | {audit * 1e3:.1f} |")


if __name__ == "__main__":
    default = (source_checkout() or Path.cwd()) / "data" / "phantom"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
