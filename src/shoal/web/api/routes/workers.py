"""GET /workers: the `shoal worker`s on this server's broker, live; GET /workers/{name}/log: a
worker's last log lines. And the Workers page that shows them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from shoal import __version__
from shoal.errors import NotFoundError
from shoal.web.api.deps import Caller, PartsDep
from shoal.web.state import Parts

router = APIRouter(prefix="/workers", tags=["workers"])
page_router = APIRouter(include_in_schema=False)
TEMPLATES = Jinja2Templates(directory=Path(__file__).parents[2] / "templates")
_lock = threading.Lock()
WorkerName = Annotated[str, PathParam(min_length=1, max_length=300, description="a worker's name, shoal-PID@HOST")]


def _fleet(request: Request, parts: Parts) -> Any:
    """The app's Fleet, made on first use: it remembers workers, to mark the silent ones lost."""
    from shoal.engines.celery.status import Fleet

    with _lock:
        fleet = getattr(request.app.state, "fleet", None)
        if fleet is None:
            assert parts.settings.broker_url is not None
            fleet = request.app.state.fleet = Fleet(parts.settings.broker_url)
        return fleet


def _no_broker(parts: Parts) -> str | None:
    if parts.settings.engine_name == "celery" and parts.settings.broker_url:
        return None
    return (
        "this server runs jobs on its own local engine and knows no broker: start it with "
        "`shoal serve --engine celery --broker URL` to list the `shoal worker`s of a cluster"
    )


@router.get("", summary="List the workers on this server's broker, with what they run now")
def list_workers(request: Request, parts: PartsDep) -> dict[str, Any]:
    note = _no_broker(parts)
    if note is not None:
        return {"workers": [], "note": note}
    return {"workers": _fleet(request, parts).workers(), "note": None}


@router.get("/{name}/log", summary="The last lines of a worker's log files", responses={404: {}})
def worker_log(
    request: Request, parts: PartsDep, name: WorkerName, lines: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    if _no_broker(parts) is not None:
        raise NotFoundError(f"no worker {name!r}: this server has no broker")
    found: dict[str, Any] | None = _fleet(request, parts).log(name, lines)
    if found is None:
        raise NotFoundError(f"worker {name!r} did not answer (see GET /api/v1/workers)")
    return found


@page_router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, parts: PartsDep, caller: Caller) -> HTMLResponse:
    context = {"caller": caller, "auth": parts.guard.required, "version": __version__, "page": "workers"}
    return TEMPLATES.TemplateResponse(request, "workers.html", context)
