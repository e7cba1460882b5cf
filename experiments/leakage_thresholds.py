"""Measure what the leakage check's two thresholds separate, on the phantom and real CT.

    python experiments/leakage_thresholds.py [--patients 60] [--sizes 64 128 224]

For each working size it prints, over all pairs: planted copies (a slice re-encoded as
JPEG at quality 40..95 after resizing by 0.5..2x), slices of one patient, and slices of
different patients, as pHash distance (bits of 256) and 16 x 16 thumbnail correlation,
then how many cross-patient pairs each criterion alone, and both together, would flag.
The thresholds in stroke/data/leakage.py come from these figures.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from stroke.data import DicomSource, FolderSource
from stroke.data.images import ImageLoader
from stroke.data.leakage import (
    MAX_HASH_DISTANCE,
    MIN_CORRELATION,
    hash_distance,
    image_signature,
)
from stroke.synth import PhantomConfig, generate_phantom

CQ500 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cq500_dicom_sample"


def re_encoded(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image resized by 0.5..2x and saved as JPEG at quality 40..95."""
    pil = Image.fromarray(image[:, :, 0])
    factor = rng.uniform(0.5, 2.0)
    pil = pil.resize((max(8, int(pil.width * factor)), max(8, int(pil.height * factor))))
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=int(rng.integers(40, 96)))
    return np.asarray(Image.open(buffer))[:, :, None]


def measure(name: str, samples, read, size: int) -> None:
    loader = ImageLoader(size, 1, read)
    sig = {s: image_signature(loader(s)) for s in samples}

    def pair(a, b):
        return hash_distance(a[0], b[0]), float(a[1] @ b[1])

    by_patient: dict[str, list] = {}
    for s in samples:
        by_patient.setdefault(s.patient_id, []).append(s)
    same = [pair(sig[a], sig[b]) for v in by_patient.values() for a, b in combinations(v, 2)]
    cross = [
        pair(sig[a], sig[b])
        for p, q in combinations(by_patient, 2)
        for a in by_patient[p]
        for b in by_patient[q]
    ]
    rng = np.random.default_rng(0)
    copies = []
    for s in samples[:60]:
        native = read(s, 1) if read else np.asarray(Image.open(s.path))[:, :, None]
        copy = ImageLoader(size, 1)
        with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
            Image.fromarray(re_encoded(native, rng)[:, :, 0]).save(tmp.name)
            copies.append(pair(sig[s], image_signature(copy(tmp.name))))
    copies_a, same_a, cross_a = (
        np.array(x) if x else np.zeros((1, 2)) for x in (copies, same, cross)
    )
    by_hash = (cross_a[:, 0] <= MAX_HASH_DISTANCE).sum()
    by_corr = (cross_a[:, 1] >= MIN_CORRELATION).sum()
    both = ((cross_a[:, 0] <= MAX_HASH_DISTANCE) & (cross_a[:, 1] >= MIN_CORRELATION)).sum()
    print(
        f"| {name} | {size} | {copies_a[:, 0].max():.0f} / {copies_a[:, 1].min():.4f} "
        f"| {same_a[:, 0].min():.0f} / {same_a[:, 1].max():.4f} "
        f"| {cross_a[:, 0].min():.0f} / {cross_a[:, 1].max():.4f} "
        f"| {by_hash} / {by_corr} / {both} of {len(cross)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    args = parser.parse_args()
    print(f"thresholds: hash distance <= {MAX_HASH_DISTANCE} and correlation >= {MIN_CORRELATION}")
    print(
        "| data | px | copies: max dist / min corr | one patient: min dist / max corr "
        "| two patients: min dist / max corr | cross-patient flagged: hash / corr / both |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        config = PhantomConfig(n_patients=args.patients, slices_per_patient=8, image_size=128)
        generate_phantom(Path(tmp), config, progress=False)
        phantom = FolderSource(tmp, patient_regex=r"^(P\d+)_").load()
        for size in args.sizes:
            measure("phantom", phantom, None, size)
    if CQ500.is_dir():
        source = DicomSource(CQ500)
        samples = source.load()
        for size in args.sizes:
            measure("CQ500 (brain window)", samples, source.read, size)


if __name__ == "__main__":
    main()
