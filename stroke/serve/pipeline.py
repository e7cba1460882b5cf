"""One `POST /api/predict`: check, store privately, preprocess, infer, explain, answer, clean up.

Each request gets its own folder (mode 0700) under the temp folder; uploads are written
there under generated names and the folder is removed when the request ends, whether it
succeeded, failed or was cancelled. Files are decoded in parallel threads through
`stroke-predict`'s own preprocessing, then queued on the inference worker. A file that
fails any step gets an `error` entry; the others still get results. Logs name a file by
its position in the request and its content hash, never by its name or DICOM fields.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stroke.hardware import decode_threads
from stroke.inference.predictor import describe_error
from stroke.serve.render import file_views
from stroke.serve.series import series_summaries
from stroke.serve.settings import ServeSettings
from stroke.serve.uploads import Upload, UploadRejected, check_upload, private_folder_file
from stroke.serve.worker import InferenceWorker
from stroke.tasks.classification.serve import ServedModel
from stroke.tasks.segmentation.serve import LesionSegmenter, lesion_entry

log = logging.getLogger("stroke.serve")


@dataclass
class _Prepared:
    upload: Upload
    path: Path | None = None
    tensor: np.ndarray | None = None
    #: the letterboxed image, kept for a model that stacks neighbouring slices
    image: np.ndarray | None = None
    error: str | None = None


@dataclass
class PredictionService:
    """What answers `POST /api/predict`: the model, its worker, the settings, a segmenter."""

    model: ServedModel
    worker: InferenceWorker
    settings: ServeSettings
    segmenter: LesionSegmenter | None = None
    patient_aggregation: str = "max"

    def __post_init__(self) -> None:
        display = self.model.preprocessing.with_image_size(self.settings.display_size)
        self.display_loader = display.file_loader()
        self._segment_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the decoding threads and the inference worker."""
        # as many decoding threads as CPUs: more would only contend for them, and each
        # thread's allocations fragment the heap a little more
        self._pool = ThreadPoolExecutor(decode_threads(), thread_name_prefix="stroke-decode")
        self.worker.start()

    def close(self) -> None:
        """Stop the inference worker and the decoding threads (after the work in flight)."""
        self.worker.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _in_pool(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def predict(
        self, uploads: list[Upload], request_id: str, overlay: bool, views: bool
    ) -> dict[str, object]:
        """The response body for these uploads (the caller has checked the file count)."""
        folder = Path(tempfile.mkdtemp(prefix="stroke-serve-", dir=self.settings.tmp_dir))
        try:
            return await self._predict_in(folder, uploads, request_id, overlay, views)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def _predict_in(
        self, folder: Path, uploads: list[Upload], request_id: str, overlay: bool, views: bool
    ) -> dict[str, object]:
        prepared = await asyncio.gather(
            *(self._in_pool(self._prepare, upload, folder) for upload in uploads)
        )
        readable = [p for p in prepared if p.error is None]
        if getattr(self.model, "context_slices", 0) and readable:
            # each slice with its neighbours among the uploads of its series, as predict does
            tensors = self.model.with_context(
                [p.path for p in readable], [p.image for p in readable]
            )
            for item, tensor in zip(readable, tensors, strict=True):
                item.tensor, item.image = tensor, None
        outcomes = await self._infer(readable, overlay)
        results = await asyncio.gather(
            *(
                self._in_pool(self._result, p, outcomes.get(p.upload.index), folder, views)
                for p in prepared
            )
        )
        for result in results:
            self._log(request_id, result)
        series = series_summaries(
            [{"index": p.upload.index, **p.upload.dicom} for p in prepared],
            {i: o[0] for i, o in outcomes.items()},
            self.model,
            self.patient_aggregation,
        )
        for row in series:
            for i in row["files"]:
                results[i]["series"] = row["series"]
        return {
            "request_id": request_id,
            "checkpoint_sha256": self.model.checkpoint_sha256,
            "classes": self.model.classes,
            "decision": self.model.rule.card(),
            "results": results,
            "series": series,
        }

    async def _infer(self, readable: list[_Prepared], overlay: bool) -> dict[int, tuple]:
        """(probabilities, decided class, Grad-CAM map or None) by upload index."""
        if not readable:
            return {}
        # an ensemble has no one network to explain: its answers come without the map
        overlay = overlay and getattr(self.model, "can_explain", True)
        futures = self.worker.submit(np.stack([p.tensor for p in readable]), explain=overlay)
        answers = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        per_image = [
            (probs, decided, None if answer.cams is None else answer.cams[i])
            for answer in answers
            for i, (probs, decided) in enumerate(zip(answer.probs, answer.decisions, strict=True))
        ]
        return {p.upload.index: outcome for p, outcome in zip(readable, per_image, strict=True)}

    # -- per file, in worker threads -----------------------------------------------------------
    def _prepare(self, upload: Upload, folder: Path) -> _Prepared:
        """Check the upload, store it under its generated name, preprocess it as predict does."""
        item = _Prepared(upload)
        try:
            check_upload(upload, self.settings.max_file_bytes, self.settings.max_pixels)
            item.path = private_folder_file(folder, upload)
            image, item.tensor = self.model.prepare(item.path)
            if getattr(self.model, "context_slices", 0):
                item.image = image
        except UploadRejected as err:
            item.error = f"rejected: {err}"
        except Exception as err:  # unreadable content is this file's error, not the request's
            item.error = _scrub(describe_error(err), item.path, folder)
        upload.data = b""  # the bytes are on disk now (or refused): let them go
        return item

    def _result(
        self, item: _Prepared, outcome: tuple | None, folder: Path, views: bool
    ) -> dict[str, object]:
        upload = item.upload
        entry: dict[str, object] = {
            "index": upload.index,
            "name": upload.name,
            "sha256": upload.sha256,
            "type": upload.kind or None,
            "error": item.error,
            "probabilities": None,
            "predicted_class": None,
            "probability": None,
            "decision_rule": self.model.rule.rule,
            "threshold": self.model.rule.threshold,
            "images": {},
            "lesion": None,
            "dicom": _dicom_fields(upload),
            "series": None,
        }
        if outcome is None:
            return entry
        probs, _, cam = outcome
        entry.update(self.model.describe(probs))
        try:
            if views or cam is not None:
                entry["images"] = file_views(
                    item.path,
                    upload.kind,
                    self.display_loader,
                    cam,
                    self.settings.display_size,
                    views,
                )
            if self.segmenter is not None:
                with self._segment_lock:
                    entry["lesion"] = lesion_entry(self.segmenter.segment(item.path))
        except Exception as err:  # the prediction stands; the pictures are what failed
            entry["error"] = "pictures: " + _scrub(describe_error(err), item.path, folder)
        return entry

    @staticmethod
    def _log(request_id: str, entry: dict[str, object]) -> None:
        if entry["predicted_class"] is not None:
            outcome = f"predicted={entry['predicted_class']} p={entry['probability']:.4f}"
        else:
            outcome = f"error={str(entry['error']).split(':', 1)[0]}"
        log.info(
            "request=%s file=%d sha256=%s type=%s %s",
            request_id,
            entry["index"],
            str(entry["sha256"])[:16],
            entry["type"] or "-",
            outcome,
        )


def _dicom_fields(upload: Upload) -> dict[str, object] | None:
    if upload.kind != "dicom":
        return None
    return {
        "patient_id": upload.dicom.get("PatientID") or None,
        "study_uid": upload.dicom.get("StudyInstanceUID") or None,
        "series_uid": upload.dicom.get("SeriesInstanceUID") or None,
        "instance": upload.dicom.get("InstanceNumber"),
    }


def _scrub(message: str, path: Path | None, folder: Path) -> str:
    """An error message without the server's private paths."""
    if path is not None:
        message = message.replace(str(path), "the upload")
    return message.replace(str(folder), "the upload folder")
