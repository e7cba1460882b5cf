"""What `stroke-serve` accepts and who may use it: the `serve:` block of conf/serve.yaml."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from stroke.errors import ConfigError

#: The environment variable that sets the access token when `serve.token` is null.
TOKEN_ENV = "STROKE_SERVE_TOKEN"
_MB = 1024 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{8,}$")


@dataclass
class ServeSettings:
    """Upload limits, access, batching and display settings of the server.

    `token`: null takes $STROKE_SERVE_TOKEN (no token when unset or empty); `auto` draws a
    random one, printed once on the terminal; any other text is the token. With a token,
    every page and API call needs it (401 otherwise).
    """

    token: str | None = None
    #: origins allowed to call the API from other pages (CORS); empty: none
    cors_origins: Sequence[str] = field(default_factory=list)
    max_files: int = 400
    max_file_mb: float = 64
    max_request_mb: float = 512
    #: images with more pixels (width x height x frames) are refused before decoding
    max_pixels: int = 40_000_000
    #: images per forward pass of the inference worker; requests queued meanwhile share it
    max_batch: int = 32
    #: how long the worker waits for more images before running a batch that is not full
    batch_wait_ms: float = 2.0
    #: chunks of images waiting for the worker; beyond it the API answers 503 (busy)
    max_queue: int = 1024
    #: side of the images the page shows (model input, Grad-CAM, DICOM windows), pixels
    display_size: int = 256
    #: where each request's private upload folder is made; null: the system temp folder
    tmp_dir: str | None = None

    def __post_init__(self) -> None:
        self.cors_origins = [str(o) for o in (self.cors_origins or [])]
        #: whether the token was drawn here (`auto`): then only the terminal can tell it
        self.token_drawn = self.token == "auto"
        self.token = _resolve_token(self.token)
        for key in ("max_files", "max_pixels", "max_batch", "max_queue", "display_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serve.{key} must be a positive integer, got {value!r}")
        for key in ("max_file_mb", "max_request_mb"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"serve.{key} must be > 0, got {getattr(self, key)!r}")
        if float(self.batch_wait_ms) < 0:
            raise ConfigError(f"serve.batch_wait_ms must be >= 0, got {self.batch_wait_ms!r}")
        if "*" in self.cors_origins and self.token:
            raise ConfigError(
                "serve.cors_origins=['*'] with a token would hand the token to any web page; "
                "list the origins that may call the API"
            )

    @property
    def max_file_bytes(self) -> int:
        """Largest accepted file, bytes."""
        return int(float(self.max_file_mb) * _MB)

    @property
    def max_request_bytes(self) -> int:
        """Largest accepted request body, bytes."""
        return int(float(self.max_request_mb) * _MB)

    def limits(self) -> dict[str, int]:
        """The limits as the model card shows them (the page checks them before sending)."""
        return {
            "max_files": self.max_files,
            "max_file_bytes": self.max_file_bytes,
            "max_request_bytes": self.max_request_bytes,
            "max_pixels": self.max_pixels,
        }


def _resolve_token(token: str | None) -> str | None:
    if token is None or str(token) == "":
        token = os.environ.get(TOKEN_ENV)
        if not token:
            return None
    token = str(token)
    if token == "auto":
        return secrets.token_urlsafe(24)
    if not _TOKEN.match(token):
        raise ConfigError(
            f"serve.token must be at least 8 characters of letters, digits and . _ ~ + / = - "
            f"(it travels in a header and a cookie), got {len(token)} characters"
        )
    return token
