"""The FastAPI application: the page, `POST /api/predict`, `GET /api/model`, `GET /healthz`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from stroke.inference.predictor import describe_error
from stroke.serve.pipeline import PredictionService
from stroke.serve.schemas import Health, ModelCard, PredictResponse
from stroke.serve.security import BodyLimit, RequestContext, TokenAuth, request_id
from stroke.serve.settings import ServeSettings
from stroke.serve.uploads import make_upload
from stroke.serve.worker import InferenceWorker, WorkerBusy
from stroke.tasks.classification.serve import ServedModel
from stroke.tasks.segmentation.serve import LesionSegmenter

log = logging.getLogger("stroke.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"

_DESCRIPTION = """\
Class probabilities, the decision at the checkpoint's operating point and Grad-CAM maps
for brain CT images (PNG, JPEG, DICOM), from a `stroke-train` checkpoint. The page at `/`
is a client of this API. Not a medical device.
"""


def create_app(
    model: ServedModel,
    settings: ServeSettings | None = None,
    segmenter: LesionSegmenter | None = None,
    patient_aggregation: str = "max",
) -> FastAPI:
    """The application serving `model`; its inference worker runs while the app does."""
    settings = settings or ServeSettings()
    worker = InferenceWorker(model, settings.max_batch, settings.batch_wait_ms, settings.max_queue)
    service = PredictionService(model, worker, settings, segmenter, patient_aggregation)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="stroke-serve",
        description=_DESCRIPTION,
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    _add_routes(app, service)
    _add_middleware(app, settings)
    return app


def _add_middleware(app: FastAPI, settings: ServeSettings) -> None:
    # added innermost first: the request passes RequestContext, CORS, TokenAuth, BodyLimit
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    if settings.token:
        app.add_middleware(TokenAuth, token=settings.token)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestContext)


def _add_routes(app: FastAPI, service: PredictionService) -> None:
    settings, model = service.settings, service.model

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        log.error("request=%s failed: %s", request_id(request.scope), type(err).__name__)
        return JSONResponse(
            {"detail": "internal error", "request_id": request_id(request.scope)}, status_code=500
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get(
        "/healthz",
        summary="Liveness: the model is loaded and its worker runs",
        response_model=Health,
        responses={503: {"description": "the inference worker has stopped"}},
    )
    async def healthz() -> JSONResponse:
        alive = service.worker.alive
        return JSONResponse(
            {"status": "ok" if alive else "worker stopped"}, status_code=200 if alive else 503
        )

    @app.get(
        "/api/model",
        summary="The model card: name, classes, input, checkpoint, decision",
        response_model=ModelCard,
    )
    async def model_card() -> dict:
        return {
            **model.card(),
            "segmenter": getattr(service.segmenter, "name", None),
            "patient_aggregation": service.patient_aggregation,
            "limits": settings.limits(),
        }

    @app.post(
        "/api/predict",
        summary="Predict one or several images (PNG, JPEG, DICOM)",
        response_model=PredictResponse,
        responses={
            401: {"description": "the server has a token and the request did not carry it"},
            413: {"description": "too many files, or the request is too large"},
            500: {"description": "inference failed; the uploads are removed all the same"},
            503: {"description": "the inference queue is full: retry"},
        },
    )
    async def predict(
        request: Request,
        files: list[UploadFile] = File(  # noqa: B008 (FastAPI's way of declaring a form field)
            ..., description="the images: PNG, JPEG or DICOM; the type is read from the content"
        ),
        overlay: bool = Query(False, description="add each image's Grad-CAM overlay (PNG)"),
        views: bool = Query(
            False, description="add the image as the model sees it and, for DICOM, per window"
        ),
    ):
        rid = request_id(request.scope)
        if len(files) > settings.max_files:
            raise HTTPException(
                413, f"{len(files)} files; serve.max_files allows {settings.max_files} a request"
            )
        uploads = [
            make_upload(i, f.filename, await f.read(settings.max_file_bytes + 1))
            for i, f in enumerate(files)
        ]
        for f in files:
            await f.close()
        try:
            return await service.predict(uploads, rid, overlay, views)
        except WorkerBusy as err:
            raise HTTPException(503, f"busy: {err}; retry", headers={"Retry-After": "1"}) from None
        except Exception as err:  # answered here, inside the middleware that adds the request id
            log.error("request=%s failed: %s", rid, describe_error(err))
            return JSONResponse({"detail": "internal error", "request_id": rid}, status_code=500)
