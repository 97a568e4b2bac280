"""Domain errors become HTTP answers here, and only here: the core never hears of HTTP.

API requests get JSON ``{"detail": ...}``; a page request without a valid token is sent to the
login page instead. Anything unexpected is logged and answered 500 without internals, and the
connection stays open for the client's next request. An answer may echo what was sent (a
refused value in a 422): it is written so that no value (a lone surrogate, NaN) can break it.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.errors import (
    AuthenticationError,
    ConfigError,
    DeadlineError,
    JobBusyError,
    JobStateError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProjectError,
    RangeNotSatisfiableError,
    ServingUnavailableError,
    ShoalError,
    StorageError,
    UnknownPipelineError,
    UploadTooLargeError,
)

log = logging.getLogger("shoal.web")
INTERNAL = "internal error: see the server's log"

STATUS: list[tuple[type[ShoalError], int]] = [
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (JobStateError, 409),
    (JobBusyError, 409),
    (UploadTooLargeError, 413),
    (RangeNotSatisfiableError, 416),
    (OverloadedError, 429),
    (ServingUnavailableError, 503),
    (DeadlineError, 504),
    (ProjectError, 503),  # the server's own pipeline code fails to load: not the request's fault
    (StorageError, 503),
    (ConfigError, 422),
    (ShoalError, 400),
]


class SafeJSON(JSONResponse):
    """JSON that any value can be written as: a lone surrogate is written as its escape
    (``\\udc80`` as text), NaN and Infinity as strings, instead of failing the answer."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (UnicodeEncodeError, ValueError):
            return super().render(_plain(content))


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_plain(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def status_of(exc: ShoalError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith(
        ("/api/", "/healthz", "/openapi.json")
    ) and "text/html" in request.headers.get("accept", "")


async def shoal_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShoalError)
    status = status_of(exc)
    if status in (401, 403) and _wants_page(request):
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, UnknownPipelineError):
        body["known"] = exc.known
    if isinstance(exc, UploadTooLargeError):
        body["limit"] = exc.limit
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RangeNotSatisfiableError):
        headers = {"Content-Range": f"bytes */{exc.size}"}
    if isinstance(exc, OverloadedError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        body["retry_after_s"] = round(exc.retry_after, 3)
    return SafeJSON(body, status_code=status, headers=headers)


async def invalid_request(request: Request, exc: Exception) -> Response:
    """422 with the fields at fault, as FastAPI words it, echoing hostile values safely."""
    assert isinstance(exc, RequestValidationError)
    return SafeJSON({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("shoal: %s %s failed", request.method, request.url.path, exc_info=exc)
    return SafeJSON({"detail": INTERNAL}, status_code=500)


class Shield:
    """ASGI middleware, the last line of defence: an unexpected error (a bug) before the answer
    began is logged and answered 500 here. Starlette's own handler answers too but then re-raises
    to the server, which drops the connection and resets the client's next request on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise  # half an answer is out: only closing the connection can say it failed
            log.exception("shoal: %s %s failed", scope.get("method"), scope.get("path"))
            await SafeJSON({"detail": INTERNAL}, status_code=500)(scope, receive, send)


def install(app: FastAPI) -> None:
    """Exception handlers, and the Shield innermost of the middleware (add it before the others)."""
    app.add_exception_handler(ShoalError, shoal_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(Shield)
