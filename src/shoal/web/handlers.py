"""Domain errors become HTTP answers here, and only here: the core never hears of HTTP.

API requests get JSON ``{"detail": ...}``; a page request without a valid token is sent to the
login page instead. Anything unexpected is logged and answered 500 without internals.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from shoal.errors import (
    AuthenticationError,
    ConfigError,
    JobBusyError,
    JobStateError,
    NotFoundError,
    PermissionDeniedError,
    ProjectError,
    RangeNotSatisfiableError,
    ShoalError,
    StorageError,
    UnknownPipelineError,
    UploadTooLargeError,
)

log = logging.getLogger("shoal.web")

STATUS: list[tuple[type[ShoalError], int]] = [
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (JobStateError, 409),
    (JobBusyError, 409),
    (UploadTooLargeError, 413),
    (RangeNotSatisfiableError, 416),
    (ProjectError, 503),  # the server's own pipeline code fails to load: not the request's fault
    (StorageError, 503),
    (ConfigError, 422),
    (ShoalError, 400),
]


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
    return JSONResponse(body, status_code=status, headers=headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    log.exception("shoal: %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error: see the server's log"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ShoalError, shoal_error)
    app.add_exception_handler(Exception, unexpected)
