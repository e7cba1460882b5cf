"""`stroke-serve`: a trained classifier behind a web page and an HTTP API (FastAPI + uvicorn).

The server preprocesses uploads through `stroke-predict`'s own code path, runs the model on
one inference worker that batches concurrent requests, and refuses unsafe uploads before
decoding them. See docs/serving.md.
"""

from stroke.serve.app import create_app
from stroke.serve.settings import ServeSettings
from stroke.tasks.classification.serve import ServedModel
from stroke.tasks.segmentation.serve import LesionMask, LesionSegmenter

__all__ = ["LesionMask", "LesionSegmenter", "ServeSettings", "ServedModel", "create_app"]
