"""Worker-level series: items and busy time by worker, item and stage duration histograms.

The same series come from two places. The embedded engine's workers are aggregated into the
coordinator's endpoint (`shoal run --metrics-port`, fed from each report through
MetricsMiddleware). A `shoal worker` process serves its own endpoint: it calls
``WorkerMetrics.serve(port)`` when it starts and ``record()`` after each chunk it ran.

Cost: a report costs a few counter increments plus at most SAMPLE duration observations. A report
of more items than that (a flood of cheap items) is observed through a systematic sample, each
sampled item weighted by the items it stands for, so histogram counts still add up to the items.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal._json import loads
from shoal.metrics._histogram import BatchHistogram
from shoal.wire import CACHED

if TYPE_CHECKING:
    from shoal.metrics.http import Endpoint
    from shoal.wire import Report

SAMPLE = 16  #: most item timings read from one report
MAX_WORKER_LABELS = 64  #: distinct worker label values; later ones are counted as "other"
BUSY_WINDOW = 10.0  #: seconds over which shoal_worker_busy_ratio is computed


class WorkerMetrics:
    """The worker-level families, registered on ``registry`` (one per process, made at start-up)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "shoal_worker_items",
            "Item attempts that workers finished, by outcome as the worker saw it (succeeded or failed).",
            ["pipeline", "worker", "outcome"],
            registry=registry,
        )
        self.busy = Counter(
            "shoal_worker_busy_seconds",
            "Seconds workers spent inside stage calls; its rate is the busy ratio.",
            ["worker"],
            registry=registry,
        )
        self.item_seconds = BatchHistogram(
            "shoal_item_duration_seconds",
            "Seconds from an item's first stage call to the end of its last, for succeeded attempts.",
            ["pipeline"],
        )
        self.stage_seconds = BatchHistogram(
            "shoal_stage_duration_seconds",
            "Seconds an item spent in one stage (a batch call's time shared by its items).",
            ["pipeline", "stage"],
        )
        self.alive = Gauge("shoal_workers_alive", "Worker processes running.", registry=registry)
        self.working = Gauge("shoal_workers_busy", "Worker processes running an item right now.", registry=registry)
        self.ratio = _BusyRatio()
        for collector in (self.item_seconds, self.stage_seconds, self.ratio):
            registry.register(collector)
        self._names: dict[str, str] = {}

    @classmethod
    def serve(cls, port: int, host: str = "0.0.0.0") -> tuple[WorkerMetrics, Endpoint]:
        """For a `shoal worker` process: a fresh registry with these families and process
        metrics, served over HTTP. Close the endpoint when the worker stops."""
        from prometheus_client import ProcessCollector, disable_created_metrics

        from shoal.metrics.http import serve

        disable_created_metrics()  # type: ignore[no-untyped-call]  # the worker process is ours: no *_created twin of every counter
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        metrics = cls(registry)
        return metrics, serve(registry, host, port)

    def record(self, worker: str, report: Report, pipeline: str) -> None:
        """Count a report's items and busy time, and observe (a sample of) their timings."""
        name = self._label(worker)
        if report.ok:
            self.items.labels(pipeline, name, "succeeded").inc(len(report.ok))
        if report.failed:
            self.items.labels(pipeline, name, "failed").inc(len(report.failed))
        if report.took:
            self.busy.labels(name).inc(report.took)
            self.ratio.add(name, report.took)
        if report.ok:
            self._timings(report.ok, pipeline)

    def set_workers(self, alive: int, busy: int | None = None) -> None:
        self.alive.set(alive)
        if busy is not None:
            self.working.set(busy)

    def _timings(self, rows: list[list[object]], pipeline: str) -> None:
        step = -(-len(rows) // SAMPLE)
        picked = rows[::step]
        weights = [step] * len(picked)
        weights[-1] = len(rows) - step * (len(picked) - 1)
        self.item_seconds.observe(
            (pipeline,),
            [(row[3] - row[2], w) for row, w in zip(picked, weights, strict=True)],  # type: ignore[operator]
        )
        by_stage: dict[str, list[tuple[float, int]]] = {}
        for row, weight in zip(picked, weights, strict=True):
            seconds = row[4]
            for stage, value in (loads(seconds) if isinstance(seconds, str | bytes) else {}).items():
                if not stage.startswith(CACHED):  # a cache hit's mark, not a duration
                    by_stage.setdefault(stage, []).append((value, weight))
        for stage, values in by_stage.items():
            self.stage_seconds.observe((pipeline, stage), values)

    def _label(self, worker: str) -> str:
        """Worker names (host:pid) change when workers are replaced: keep the label set bounded."""
        name = self._names.get(worker)
        if name is None:
            name = worker if len(self._names) < MAX_WORKER_LABELS else "other"
            self._names[worker] = name
        return name


class _BusyRatio(Collector):
    """shoal_worker_busy_ratio: stage seconds reported over the last BUSY_WINDOW seconds, per worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, deque[tuple[float, float]]] = {}  #: worker -> (when, seconds)
        self._first: dict[str, float] = {}

    def add(self, worker: str, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            reports = self._reports.get(worker)
            if reports is None:
                reports = self._reports[worker] = deque()
                self._first[worker] = now - seconds
            reports.append((now, seconds))
            while reports[0][0] < now - BUSY_WINDOW:
                reports.popleft()

    def collect(self) -> Iterator[Metric]:
        family = _ratio_family()
        now = time.monotonic()
        with self._lock:
            for worker, reports in self._reports.items():
                while reports and reports[0][0] < now - BUSY_WINDOW:
                    reports.popleft()
                window = min(BUSY_WINDOW, max(now - self._first[worker], 1e-3))
                family.add_metric([worker], min(1.0, sum(s for _, s in reports) / window))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield _ratio_family()


def _ratio_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "shoal_worker_busy_ratio",
        f"Share of the last {BUSY_WINDOW:g} s each worker spent inside stage calls (0 to 1).",
        labels=["worker"],
    )
