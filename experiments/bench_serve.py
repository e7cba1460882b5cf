"""Load on `stroke-serve`: throughput, latency percentiles and the server's memory.

    python experiments/bench_serve.py              # the newest run's best checkpoint, 500 x 16
    python experiments/bench_serve.py requests=500 concurrency=16 memory_requests=1000
    python experiments/bench_serve.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt
    python experiments/bench_serve.py 'query=?overlay=true&views=true'   # as the page asks

Starts `stroke-serve` on a free 127.0.0.1 port (a bounded number of requests, nothing
else is contacted), sends `warmup` requests, then `requests` requests from `concurrency`
client threads, each with `files_per_request` images cycled from `inputs` (default:
../shared/datasets/head_ct/images when present, else the phantom under data/), and
prints throughput, p50/p95/p99 latency and the server's resident memory (VmRSS) before
and after. Then `memory_requests` more, sampling the RSS every `memory_every`: a server
that keeps something per request grows here. The client runs on the same machine and
takes CPU from the server: the figures are a lower bound of what the server alone does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path

import httpx
import numpy as np
from omegaconf import OmegaConf

from stroke.config import source_checkout, stroke_home

DEFAULTS = {
    "ckpt_path": None,
    "inputs": None,
    "requests": 500,
    "concurrency": 16,
    "files_per_request": 1,
    "warmup": 20,
    "memory_requests": 1000,
    "memory_every": 100,
    "query": "",
    "serve_overrides": [],
}


def latest_checkpoint() -> Path:
    """The best checkpoint of the newest `stroke-train` run under outputs/."""
    for summary in sorted((stroke_home() / "outputs" / "train" / "runs").glob("*/metrics.json"))[
        ::-1
    ]:
        best = json.loads(summary.read_text()).get("best_model_path")
        if best and Path(best).is_file():
            return Path(best)
    raise SystemExit(
        "no finished stroke-train run under outputs/: run `make train` or give ckpt_path="
    )


def default_inputs() -> list[Path]:
    head_ct = source_checkout().parent / "shared" / "datasets" / "head_ct" / "images"
    folder = head_ct if head_ct.is_dir() else stroke_home() / "data" / "phantom"
    files = sorted(folder.rglob("*.png"))
    if not files:
        raise SystemExit(f"no PNG under {folder}: run `make data` or give inputs=")
    return files


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(ckpt: Path, port: int, run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    script = Path(sys.executable).parent / "stroke-serve"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "stroke.cli.serve"]
    command += [f"ckpt_path={ckpt}", f"port={port}", f"hydra.run.dir={run_dir}", *overrides]
    env = {k: v for k, v in os.environ.items() if k != "STROKE_SERVE_TOKEN"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"stroke-serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("stroke-serve did not start within 300 s")


class Load:
    """Requests from client threads, each with its own connection."""

    def __init__(self, url: str, payloads: list[list[tuple[str, bytes]]], concurrency: int):
        self.url, self.payloads, self.concurrency = url, payloads, concurrency
        self._local = threading.local()
        self._next = cycle(range(len(payloads)))
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        if not hasattr(self._local, "client"):
            self._local.client = httpx.Client(timeout=300)
        return self._local.client

    def _one(self, _: int) -> tuple[float, bool]:
        with self._lock:
            files = self.payloads[next(self._next)]
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        started = time.perf_counter()
        response = self._client().post(self.url, files=parts)
        ok = response.status_code == 200 and not any(r["error"] for r in response.json()["results"])
        return time.perf_counter() - started, ok

    def run(self, n: int) -> tuple[float, np.ndarray, int]:
        """(wall seconds, latencies, failed requests) of n requests."""
        started = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            outcomes = list(pool.map(self._one, range(n)))
        wall = time.perf_counter() - started
        return wall, np.array([t for t, _ in outcomes]), sum(not ok for _, ok in outcomes)


def main() -> None:
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_cli(sys.argv[1:]))
    ckpt = Path(cfg.ckpt_path) if cfg.ckpt_path else latest_checkpoint()
    inputs = [Path(p) for p in cfg.inputs] if cfg.inputs else default_inputs()
    blobs = [(p.name, p.read_bytes()) for p in inputs]
    per = int(cfg.files_per_request)
    payloads = [[blobs[(i * per + j) % len(blobs)] for j in range(per)] for i in range(len(blobs))]
    load_avg = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(ckpt, port, Path(tmp), list(cfg.serve_overrides))
        try:
            load = Load(
                f"http://127.0.0.1:{port}/api/predict{cfg.query}", payloads, cfg.concurrency
            )
            load.run(int(cfg.warmup))
            before = rss_mb(server.pid)
            wall, latencies, failed = load.run(int(cfg.requests))
            after = rss_mb(server.pid)
            samples = [after]
            for _ in range(int(cfg.memory_requests) // int(cfg.memory_every)):
                load.run(int(cfg.memory_every))
                samples.append(rss_mb(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=60)
    p50, p95, p99 = np.percentile(latencies * 1000, [50, 95, 99])
    images = int(cfg.requests) * per
    print(f"checkpoint: {ckpt}")
    print(f"inputs: {len(inputs)} files from {inputs[0].parent}, {per} per request")
    print(f"query: {cfg.query!r}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in load_avg)}; cpus {os.cpu_count()}")
    print()
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| requests (concurrency) | {cfg.requests} ({cfg.concurrency}), {failed} failed |")
    print(f"| throughput | {cfg.requests / wall:.1f} requests/s, {images / wall:.1f} images/s |")
    print(f"| latency p50 / p95 / p99 | {p50:.0f} / {p95:.0f} / {p99:.0f} ms |")
    print(f"| server RSS before / after | {before:.0f} / {after:.0f} MiB |")
    trace = " ".join(f"{s:.0f}" for s in samples)
    print(
        f"| RSS over {cfg.memory_requests} more requests (every {cfg.memory_every}) | {trace} MiB; "
        f"growth {samples[-1] - samples[0]:+.0f} MiB |"
    )


if __name__ == "__main__":
    main()
