"""The one thread that runs the model: images of concurrent requests batched together.

Requests decode their files in parallel (threads), then hand the normalised inputs to
this worker as jobs of at most `max_batch` images. The worker takes jobs first come,
first served, joins those waiting (up to `max_batch` images, waiting at most
`batch_wait_ms` for more) into one forward pass, and answers each job's future. A model
is never run from two threads at once, so Grad-CAM's hooks and the weights are safe;
a full queue is refused (503) rather than letting memory grow without bound, and a
failing batch fails only its own jobs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from stroke.tasks.classification.serve import ServedModel

log = logging.getLogger(__name__)


class WorkerBusy(RuntimeError):
    """The queue of jobs is full: the caller should retry later."""


@dataclass
class Outcome:
    """A job's answer: probabilities, decided classes and (if asked) Grad-CAM maps."""

    probs: np.ndarray
    decisions: list[int]
    cams: np.ndarray | None = None


@dataclass
class _Job:
    inputs: np.ndarray
    explain: bool
    future: Future = field(default_factory=Future)


class InferenceWorker:
    """Runs `model` on batches of queued jobs in one background thread."""

    def __init__(
        self,
        model: ServedModel,
        max_batch: int = 32,
        batch_wait_ms: float = 2.0,
        max_queue: int = 1024,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._carry: _Job | None = None
        self._thread: threading.Thread | None = None
        #: forward passes run and images in them (the benchmark reads the mean batch)
        self.batches = 0
        self.images = 0

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="stroke-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, then end the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, inputs: np.ndarray, explain: bool = False) -> list[Future]:
        """Queue `inputs` (N x C x H x W) in jobs of at most max_batch; their futures, in order.

        Raises WorkerBusy when the queue cannot take them all.
        """
        if not self.alive:
            raise RuntimeError("the inference worker is not running")
        jobs = [
            _Job(inputs[i : i + self.max_batch], explain)
            for i in range(0, len(inputs), self.max_batch)
        ]
        if self._queue.maxsize and self._queue.qsize() + len(jobs) > self._queue.maxsize:
            raise WorkerBusy(f"{self._queue.qsize()} jobs are waiting for the model")
        for job in jobs:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                job.future.set_exception(WorkerBusy("the queue of jobs is full"))
        return [job.future for job in jobs]

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                return
            self._process(jobs)

    def _next_batch(self) -> list[_Job] | None:
        """Jobs for one forward pass (None: stop); a job that would overflow it waits."""
        first = self._carry or self._queue.get()
        self._carry = None
        if first is None:
            return None
        jobs, count = [first], len(first.inputs)
        deadline = time.monotonic() + self.batch_wait_s
        while count < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:  # stop after this batch
                self._queue.put(None)
                break
            if count + len(job.inputs) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            count += len(job.inputs)
        return jobs

    def _process(self, jobs: list[_Job]) -> None:
        # a request that went away (client disconnected) cancelled its futures: skip them
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            batch = np.concatenate([j.inputs for j in jobs])
            probs = self.model.probabilities(batch)
            decisions = [self.model.rule.decide(p) for p in probs]
            explained = [j.explain for j in jobs for _ in range(len(j.inputs))]
            cams = None
            if any(explained):
                rows = np.nonzero(explained)[0]
                cams = np.zeros(batch.shape[:1] + batch.shape[2:], dtype=np.float32)
                cams[rows] = self.model.grad_cams(batch[rows], [decisions[r] for r in rows])
        except Exception as err:  # the batch's requests get the error; the worker lives on
            log.exception("inference failed on a batch of %d image(s)", len(jobs))
            for job in jobs:
                job.future.set_exception(err)
            return
        self.batches += 1
        self.images += len(batch)
        start = 0
        for job in jobs:
            stop = start + len(job.inputs)
            job.future.set_result(
                Outcome(
                    probs[start:stop],
                    decisions[start:stop],
                    cams[start:stop] if cams is not None and job.explain else None,
                )
            )
            start = stop
