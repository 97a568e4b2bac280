"""MetricsMiddleware: the coordinator's view of a job as Prometheus series.

Counts come from the coordinator's Progress, so they agree with the ledger: an item is counted
succeeded or failed once, when its outcome is final, and a retried attempt is counted as a retry.
Progress carries running totals (a resumed job starts from its earlier counts), so the counters
advance by the difference from the previous call; the first call, right after before_run, only
sets that baseline. The pending and in-flight gauges are shared by every job of a pipeline that
runs in the process (a server runs several at once): each job moves them by the change in its own
share, so one job's figures never overwrite another's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from shoal.middleware import Middleware, Progress

if TYPE_CHECKING:
    from shoal.metrics.worker import WorkerMetrics
    from shoal.store import JobRecord
    from shoal.wire import Report


class JobMetrics:
    """The job-level families, registered on ``registry`` (one per process, made at start-up)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "shoal_items",
            "Items that reached a final outcome (succeeded or failed), as recorded in the ledger.",
            ["pipeline", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "shoal_item_retries", "Failed attempts that were scheduled to run again.", ["pipeline"], registry=registry
        )
        self.pending = Gauge(
            "shoal_items_pending",
            "Items known to a running job and waiting for a worker.",
            ["pipeline"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "shoal_items_in_flight", "Items handed to workers and not yet reported.", ["pipeline"], registry=registry
        )
        self.info = Gauge(
            "shoal_pipeline_info",
            "1 for each pipeline version this process ran: its code fingerprint and the shoal version.",
            ["pipeline", "fingerprint", "shoal_version"],
            registry=registry,
        )


class MetricsMiddleware(Middleware):
    """Feeds JobMetrics from one run, and WorkerMetrics too when the workers report only to us
    (the embedded engine); a process running many jobs shares the families between them."""

    def __init__(self, jobs: JobMetrics, workers: WorkerMetrics | None = None) -> None:
        self.jobs, self.workers = jobs, workers
        self.pipeline = ""
        self._last: tuple[int, int, int] | None = None  #: done, failed, retries at the previous call
        self._share = (0, 0)  #: this job's part of the pending and in-flight gauges

    def before_run(self, job: JobRecord, workers: int) -> None:
        from shoal import __version__

        self.pipeline = job.pipeline
        self.jobs.info.labels(job.pipeline, job.fingerprint, __version__).set(1)
        self._last, self._share = None, (0, 0)
        self._succeeded = self.jobs.items.labels(job.pipeline, "succeeded")
        self._failed = self.jobs.items.labels(job.pipeline, "failed")
        self._retried = self.jobs.retries.labels(job.pipeline)
        self._pending = self.jobs.pending.labels(job.pipeline)
        self._in_flight = self.jobs.in_flight.labels(job.pipeline)

    def after_report(self, worker: str, report: Report) -> None:
        if self.workers is not None:
            self.workers.record(worker, report, self.pipeline)

    def on_progress(self, progress: Progress) -> None:
        now = (progress.done, progress.failed, progress.retries)
        if self._last is not None:
            done, failed, retries = (a - b for a, b in zip(now, self._last, strict=True))
            if done:
                self._succeeded.inc(done)
            if failed:
                self._failed.inc(failed)
            if retries:
                self._retried.inc(retries)
        self._last = now
        self._set_share(max(0, progress.remaining - progress.in_flight), progress.in_flight)
        if self.workers is not None and progress.workers_alive is not None:
            self.workers.set_workers(progress.workers_alive, progress.workers_busy)

    def after_run(self, job: JobRecord, progress: Progress, outcome: str) -> None:
        self.on_progress(progress)
        # what an interrupted run leaves stays pending in the ledger, for the next run
        self._set_share(progress.remaining if outcome != "finished" else 0, 0)
        if self.workers is not None:
            self.workers.set_workers(0, 0)

    def _set_share(self, pending: int, in_flight: int) -> None:
        self._pending.inc(pending - self._share[0])
        self._in_flight.inc(in_flight - self._share[1])
        self._share = (pending, in_flight)
