"""The web UI: server-rendered page shells; the data comes from the REST API (and SSE) in app.js."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from shoal import __version__
from shoal.web.api.deps import Caller, ItemId, JobDep, PartsDep
from shoal.web.api.routes.pipelines import pipeline_public

HERE = Path(__file__).parent


def ui_router(templates: Jinja2Templates) -> APIRouter:
    """The pages; every one but /login needs a token when the server needs one (see TokenGate)."""
    pages = APIRouter(include_in_schema=False)
    public = APIRouter(include_in_schema=False)

    def render(request: Request, name: str, parts: PartsDep, caller: str | None, **context: Any) -> HTMLResponse:
        context |= {"caller": caller, "auth": parts.guard.required, "version": __version__}
        return templates.TemplateResponse(request, name, context)

    @pages.get("/", response_class=HTMLResponse)
    def jobs_page(request: Request, parts: PartsDep, caller: Caller) -> HTMLResponse:
        return render(request, "jobs.html", parts, caller, page="jobs")

    @pages.get("/submit", response_class=HTMLResponse)
    def submit_page(
        request: Request, parts: PartsDep, caller: Caller, pipeline: Annotated[str | None, Query()] = None
    ) -> HTMLResponse:
        pipelines = [pipeline_public(p) for p in parts.catalog]
        limit = f"{parts.settings.max_upload_mb:g} MiB"
        return render(
            request,
            "submit.html",
            parts,
            caller,
            page="submit",
            pipelines=pipelines,
            chosen=pipeline,
            max_upload=limit,
            max_upload_bytes=parts.settings.max_upload_bytes,
        )

    @pages.get("/pipelines", response_class=HTMLResponse)
    def pipelines_page(request: Request, parts: PartsDep, caller: Caller) -> HTMLResponse:
        pipelines = [pipeline_public(p) for p in parts.catalog]
        return render(request, "pipelines.html", parts, caller, page="pipelines", pipelines=pipelines)

    @pages.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, parts: PartsDep, caller: Caller) -> HTMLResponse:
        return render(request, "models.html", parts, caller, page="models")

    @pages.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job: JobDep, parts: PartsDep, caller: Caller) -> HTMLResponse:
        return render(request, "job.html", parts, caller, page="job", job=job)

    @pages.get("/jobs/{job_id}/items/{item_id}", response_class=HTMLResponse)
    def item_page(request: Request, job: JobDep, item_id: ItemId, parts: PartsDep, caller: Caller) -> HTMLResponse:
        return render(request, "item.html", parts, caller, page="item", job=job, item_id=item_id)

    @public.get("/login", response_class=HTMLResponse)
    def login_page(
        request: Request, parts: PartsDep, next: Annotated[str, Query(max_length=2000)] = "/"
    ) -> HTMLResponse:
        return render(request, "login.html", parts, None, page="login", next=_local(next))

    public.include_router(pages)
    return public


def _local(target: str) -> str:
    """A path on this server to return to after logging in, else "/": a browser reads "//host",
    "/\\host" and either with a tab or newline in it (which it drops) as another site."""
    if not target.startswith("/") or any(c == "\\" or ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"
    return "/" if target.startswith("//") else target
