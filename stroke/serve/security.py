"""Who may call the server and how much they may send: ASGI middlewares.

- `RequestContext`: a request id for every request (`X-Request-ID`, taken from the
  client when it is a plain short token), security headers, one log line per request
  with method, path (never the query string, which may hold the token), status and time.
- `TokenAuth`: with a token, every page and API call needs it: `Authorization: Bearer`,
  or the cookie set when the page is opened once as `/?token=...`; 401 otherwise.
- `BodyLimit`: a request body larger than `serve.max_request_mb` is refused with 413,
  from its Content-Length or, without one, as soon as the bytes received pass the cap.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import time
import uuid
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

log = logging.getLogger("stroke.serve")

COOKIE = "stroke_serve_token"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: the page runs only its own script and styles; images may be data: URLs (the results)
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
#: FastAPI's own documentation pages load Swagger UI / ReDoc from their CDN
_DOC_PATHS = ("/docs", "/redoc")


def request_id(scope: dict) -> str:
    """The id RequestContext gave this request."""
    return scope.get("state", {}).get("request_id", "-")


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    """Send a complete JSON response."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContext:
    """Request id, security headers and the request's log line."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = _header(scope, b"x-request-id")
        rid = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        started, status = time.perf_counter(), [0]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-request-id", rid.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                if not path.startswith(_DOC_PATHS):
                    headers += [
                        (b"content-security-policy", _PAGE_CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                    ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "request=%s %s %s %d %.0f ms",
                rid,
                scope.get("method", "?"),
                path,
                status[0] or 500,
                (time.perf_counter() - started) * 1000,
            )


class TokenAuth:
    """Every request needs the token (header or cookie); `/?token=` sets the cookie."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token

    def _valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        bearer = _header(scope, b"authorization") or ""
        bearer = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if self._valid(bearer) or self._valid(_cookie(scope, COOKIE)):
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope.get("method") == "GET" and self._valid((query.get("token") or [None])[0]):
            # the page opened with its token: keep it in a cookie and drop it from the URL
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", same_origin_path(scope.get("path", "")).encode()),
                        (b"set-cookie", cookie.encode()),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return None
        await _unauthorized(scope, send)
        return None


async def _unauthorized(scope, send) -> None:
    path = scope.get("path", "")
    challenge = [(b"www-authenticate", b'Bearer realm="stroke-serve"')]
    detail = "this server needs its access token (Authorization: Bearer <token>)"
    if path.startswith(("/api", "/healthz", "/openapi.json", "/static")):
        await send_json(send, 401, {"detail": detail, "request_id": request_id(scope)}, challenge)
        return
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>stroke-serve: token</title>"
        "<h1>Access token needed</h1><p>This server needs its access token. Enter it, or open "
        "the address with <code>?token=</code> once.</p>"
        f'<form method="get" action="{html.escape(same_origin_path(path))}">'
        '<input name="token" type="password" autocomplete="off" aria-label="token">'
        "<button>Open</button></form></html>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
                *challenge,
            ],
        }
    )
    await send({"type": "http.response.body", "body": page})


class BodyLimit:
    """413 for request bodies over `max_bytes`, whether or not they announce their length."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        detail = {
            "detail": f"the request is larger than serve.max_request_mb "
            f"({self.max_bytes / 2**20:g} MB); send fewer or smaller files",
            "request_id": request_id(scope),
        }
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            await send_json(send, 413, detail)
            return None
        received, exceeded, replaced = [0], [False], [False]

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_bytes:
                    exceeded[0] = True
                    raise _TooLarge()
            return message

        async def guarded_send(message) -> None:
            # the app answers its parsing error; the client is told what really happened
            if exceeded[0]:
                if message["type"] == "http.response.start" and not replaced[0]:
                    replaced[0] = True
                    await send_json(send, 413, detail)
                return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not replaced[0]:
                await send_json(send, 413, detail)
        return None


class _TooLarge(Exception):
    """Raised inside the app's receive when the body passes the cap."""


def same_origin_path(path: str) -> str:
    """A path on this server only (`//host/...` would send the browser elsewhere)."""
    return "/" + path.lstrip("/\\")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    try:
        morsel = SimpleCookie(raw).get(name)
    except Exception:  # a malformed Cookie header is no token
        return None
    return morsel.value if morsel else None
