"""Listing benchmark of the RSNA layout: the label table's parse, the folder's listing, their join.

    python experiments/bench_rsna_listing.py                      # N = 75,000 and 750,000
    python experiments/bench_rsna_listing.py --sizes 7500 75000 --dir /tmp/rsna_bench

For each N (images) it writes, once, a synthetic `stage_2_train.csv` of 6 N rows
(`ID_<hex>_<subtype>,0|1`, RSNA's spelling and order, about 14% positive as in the challenge)
and a flat folder of N empty files `ID_<hex>.dcm`, 0.1% of the table's images without a file
and as many files without labels. Then, in a fresh process per size, it times the three
stages `RsnaSource.load` runs before it reads any header, each the best of --repeat runs:

- parse: `parse_label_table`, the table streamed through the stdlib csv module into a dict;
- list: `list_dicom_names`, one `os.scandir` of the folder (warm: the files were just made);
- join: `join_table`, one dict lookup per image.

The headers are not part of it: `RsnaSource` reads each labelled file's header once after
the join (per file, about 0.2 ms on a local disk, so linear by construction); the files
here are empty. Printed: seconds per stage and in all, how far the stages raise the
process's peak resident memory above what it held before them (the interpreter, and torch,
which `stroke.data` imports), and each stage's growth exponent k (t ~ N^k) between the two
sizes, log(t2/t1)/log(N2/N1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stroke.data.rsna_table import (  # noqa: E402 (the checkout's, not an installed copy)
    RSNA_LABELS,
    join_table,
    list_dicom_names,
    parse_label_table,
)

STAGES = ("parse", "list", "join")
#: one image in this many is in the table without a file, and as many files are unlabelled
MISMATCH_EVERY = 1000


def write_layout(folder: Path, n: int, seed: int = 0) -> Path:
    """`<folder>/stage_2_train.csv` and `<folder>/stage_2_train_images/` for n images."""
    import random

    rng = random.Random(seed)
    images = folder / "stage_2_train_images"
    images.mkdir(parents=True, exist_ok=True)
    with (folder / "stage_2_train.csv").open("w") as table:
        table.write("ID,Label\n")
        for i in range(n):
            image = f"ID_{i:09x}"
            bleed = rng.random() < 0.14
            subtypes = [int(bleed and rng.random() < 0.3) for _ in RSNA_LABELS[:-1]]
            for name, value in zip(RSNA_LABELS, [*subtypes, int(bleed)], strict=True):
                table.write(f"{image}_{name},{value}\n")
            if i % MISMATCH_EVERY != 0:  # the table's image without its file
                os.close(os.open(images / f"{image}.dcm", os.O_CREAT | os.O_WRONLY, 0o644))
    for i in range(n // MISMATCH_EVERY):  # files the table does not list
        os.close(os.open(images / f"ID_f{i:08x}.dcm", os.O_CREAT | os.O_WRONLY, 0o644))
    (folder / "done").write_text(str(n))
    return folder


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(folder: Path, repeat: int) -> dict[str, float]:
    """The three stages on one layout, in this process: the best of `repeat` timings each
    (the machine is shared), the counts, and the peak memory growth."""
    times = {stage: math.inf for stage in STAGES}
    resident = _status_mb("VmRSS")  # the interpreter with stroke.data (torch) imported
    for _ in range(repeat):
        start = time.perf_counter()
        table = parse_label_table(folder / "stage_2_train.csv")
        times["parse"] = min(times["parse"], time.perf_counter() - start)
        start = time.perf_counter()
        names = list_dicom_names(folder / "stage_2_train_images")
        times["list"] = min(times["list"], time.perf_counter() - start)
        start = time.perf_counter()
        joined = join_table(table, names)
        times["join"] = min(times["join"], time.perf_counter() - start)
        peak = _status_mb("VmHWM") - resident
        del table, names  # the next round starts from the same memory
    return {
        **times,
        "rows": sum(1 for _ in (folder / "stage_2_train.csv").open()) - 1,
        "labelled": len(joined.labelled),
        "without_file": len(joined.without_file),
        "without_labels": len(joined.without_labels),
        "peak_growth_mb": peak,
    }


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    return math.log(t2 / t1) / math.log(n2 / n1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[75_000, 750_000])
    parser.add_argument("--dir", type=Path, default=None, help="where the layouts are written")
    parser.add_argument("--keep", action="store_true", help="keep the layouts for another run")
    parser.add_argument("--repeat", type=int, default=3, help="timings per stage; the best kept")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # the child: one layout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeat)))
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="rsna_bench_"))
    results = {}
    try:
        for n in args.sizes:
            folder = base / f"n{n}"
            if not (folder / "done").is_file():
                start = time.perf_counter()
                write_layout(folder, n)
                print(f"wrote N={n:,} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(folder), "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            results[n] = json.loads(child.stdout)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(report(results, os.getloadavg()))


def report(results: dict[int, dict[str, float]], load: tuple[float, ...]) -> str:
    (n1, r1), (n2, r2) = sorted(results.items())
    lines = [
        "| N images | rows | parse s | list s | join s | total s | peak memory growth MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, r in sorted(results.items()):
        total = sum(r[s] for s in STAGES)
        lines.append(
            f"| {n:,} | {int(r['rows']):,} | {r['parse']:.2f} | {r['list']:.2f} | "
            f"{r['join']:.2f} | {total:.2f} | {r['peak_growth_mb']:.0f} |"
        )
    growth = [f"{s} {exponent(r1[s], r2[s], n1, n2):.2f}" for s in STAGES]
    totals = [sum(r[s] for s in STAGES) for r in (r1, r2)]
    growth.append(f"total {exponent(*totals, n1, n2):.2f}")
    lines.append("")
    lines.append(f"growth exponent k (t ~ N^k, N={n1:,} to {n2:,}): " + ", ".join(growth))
    mismatch = f"{int(r2['without_file']):,} without file, {int(r2['without_labels']):,} unlabelled"
    lines.append(f"at N={n2:,}: {int(r2['labelled']):,} labelled, {mismatch}")
    lines.append(f"load average after: {load[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
