"""`shoal run --metrics-port`: a /metrics endpoint for the life of one run.

The coordinator process serves the job's series, its embedded workers' series (aggregated from
their reports: workers are short-lived subprocesses, so they are not scraped one by one), the
ledger's jobs by state, and its own process metrics. A run ends when its job ends; with
``metrics_linger`` the endpoint stays up that many seconds more, so Prometheus gets a final
scrape of the end state (set it to at least the scrape interval).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

from shoal.metrics.http import Endpoint, serve
from shoal.metrics.ledger import JobsCollector
from shoal.metrics.middleware import JobMetrics, MetricsMiddleware
from shoal.metrics.worker import WorkerMetrics

if TYPE_CHECKING:
    from shoal.middleware import Progress
    from shoal.settings import RunSettings
    from shoal.store import JobRecord, Ledger


class RunEndpoint(MetricsMiddleware):
    """MetricsMiddleware that also owns the registry and the HTTP endpoint of this process."""

    def __init__(self, registry: CollectorRegistry, endpoint: Endpoint, workers: WorkerMetrics | None) -> None:
        super().__init__(JobMetrics(registry), workers)
        self.registry = registry
        self.endpoint: Endpoint | None = endpoint
        self.linger = 0.0

    @classmethod
    def start(cls, settings: RunSettings, ledger: Ledger) -> RunEndpoint:
        """Build the registry and start serving it on settings.metrics_host:metrics_port."""
        assert settings.metrics_port is not None
        disable_created_metrics()  # type: ignore[no-untyped-call]  # this process is ours: no *_created twin of every counter
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        registry.register(JobsCollector(ledger))
        # workers of other engines serve their own series (`shoal worker --metrics-port`)
        workers = WorkerMetrics(registry) if settings.engine_name == "local" else None
        endpoint = serve(registry, settings.metrics_host, settings.metrics_port)
        try:
            run = cls(registry, endpoint, workers)
        except BaseException:
            endpoint.close()
            raise
        run.linger = settings.metrics_linger
        print(f"shoal: serving metrics at {endpoint.url}", file=sys.stderr, flush=True)
        return run

    def after_run(self, job: JobRecord, progress: Progress, outcome: str) -> None:
        super().after_run(job, progress, outcome)
        try:
            time.sleep(self.linger)
        except KeyboardInterrupt:  # Ctrl-C while lingering: the job is done, only stop waiting
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
