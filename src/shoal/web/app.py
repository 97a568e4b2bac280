"""create_app(settings): assembles the FastAPI app; nothing is built at import time.

The app serves the REST API under /api/v1 (OpenAPI at /docs), /healthz, the web UI and its
static files. Its job service starts with the app (resuming unfinished jobs) and stops with it.

Other parts plug in without touching this file's callers: ``middleware`` joins every job run
(metrics, logging), and ``mounts`` adds ASGI apps at fixed paths, e.g. a Prometheus exporter at
``/metrics``; the token check covers them like every route but /healthz and the login page.

Every request passes, outermost first: the Host and Origin check (hosts.py), the token check
(security.py), then the Shield that answers a bug with a 500 (handlers.py), then the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from shoal import __version__
from shoal.middleware import Middleware
from shoal.serving import Serving
from shoal.serving.metrics import ServingMetrics
from shoal.store import Ledger
from shoal.store.tokens import has_tokens
from shoal.web import handlers
from shoal.web.api.routes import events, files, health, items, jobs, models, pipelines, predict, session, workers
from shoal.web.catalog import Catalog
from shoal.web.docs import install_docs
from shoal.web.hosts import HostGate, HostPolicy
from shoal.web.metrics import ServerMetrics
from shoal.web.security import Guard, TokenGate
from shoal.web.service import JobService, log
from shoal.web.settings import ServerSettings
from shoal.web.state import Parts
from shoal.web.ui import ui_router
from shoal.web.views import JobViews

HERE = Path(__file__).parent
API = "/api/v1"


def create_app(
    settings: ServerSettings | None = None,
    *,
    middleware: Sequence[Middleware] = (),
    mounts: Mapping[str, ASGIApp] | None = None,
) -> FastAPI:
    """The shoal web app for these settings; opens the ledger and loads the projects now."""
    settings = settings or ServerSettings.build()
    ledger = Ledger(settings.ledger_url)
    catalog = Catalog.load(settings.projects)
    metrics = ServerMetrics(ledger, local_workers=settings.engine_name == "local")
    service = JobService(settings, ledger, catalog, middleware=middleware, per_job=metrics.for_job)
    guard = Guard(ledger, settings.auth_required)
    roots = settings.input_roots()
    serving = Serving(
        catalog,
        settings.data_root,
        ledger=ledger,
        read_roots=None if roots is None else [str(r) for r in roots],
        metrics=ServingMetrics(metrics.registry),
    )
    parts = Parts(settings, ledger, catalog, service, guard, JobViews(ledger, service), serving)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if guard.required and not has_tokens(ledger):
            log.warning("shoal: this server needs tokens and has none yet: run `shoal token create NAME`")
        service.start()
        await run_in_threadpool(serving.start_configured)
        try:
            yield
        finally:
            await run_in_threadpool(serving.close)
            await run_in_threadpool(service.stop)
            ledger.close()

    app = FastAPI(
        title="shoal",
        version=__version__,
        summary="Run a pipeline over every item of a dataset: submit jobs, follow them, download results.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        generate_unique_id_function=lambda route: route.name,  # operation ids: the route functions' names
    )
    app.state.parts = parts
    handlers.install(app)
    for module in (predict, jobs, items, files, events, pipelines):  # the most requested first
        app.include_router(module.router, prefix=API)
    app.include_router(models.router, prefix=API)
    app.include_router(session.router, prefix=API)
    app.include_router(workers.router, prefix=API)
    app.include_router(workers.page_router)
    app.include_router(health.router)
    install_docs(app)
    app.router.routes.append(metrics.route())  # Prometheus; behind the token check like the API
    for path, mounted in (mounts or {}).items():
        app.mount(path, mounted)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(ui_router(Jinja2Templates(directory=HERE / "templates")))
    app.add_middleware(TokenGate, guard=guard)
    app.add_middleware(HostGate, policy=HostPolicy.for_server(settings.host, settings.allowed_hosts))
    return app
