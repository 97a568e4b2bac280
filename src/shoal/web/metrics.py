"""/metrics for `shoal serve`: job counts from the ledger, and every job the server runs.

One registry per app, made when the app is built. Each job gets its own MetricsMiddleware (it
tracks the job's running totals) over the app's shared families; with the embedded engine the
workers' series come through it too (cluster workers serve their own).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.metrics.http import asgi_app
from shoal.metrics.ledger import JobsCollector
from shoal.metrics.middleware import JobMetrics, MetricsMiddleware
from shoal.metrics.worker import WorkerMetrics
from shoal.store import Ledger


class ServerMetrics:
    """The app's registry and families; ``for_job()`` makes the middleware of one job run."""

    def __init__(self, ledger: Ledger, *, local_workers: bool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(JobsCollector(ledger))
        self.jobs = JobMetrics(self.registry)
        self.workers = WorkerMetrics(self.registry) if local_workers else None

    def for_job(self) -> MetricsMiddleware:
        return MetricsMiddleware(self.jobs, self.workers)

    def route(self) -> Route:
        """GET /metrics (a route, not a mount: a mount answers /metrics with a redirect)."""
        return Route("/metrics", _Asgi(asgi_app(self.registry)), include_in_schema=False)


class _Asgi:
    """Lets Starlette route to a plain ASGI callable (a bare function would be taken for an endpoint)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
