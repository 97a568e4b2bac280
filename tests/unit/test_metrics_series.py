"""The series themselves: batch histograms, worker series, the middleware's counts, jobs by state,
and how they are served (HTTP endpoint, ASGI app, exposition)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shoal.errors import ConfigError
from shoal.metrics._histogram import BatchHistogram
from shoal.metrics.http import asgi_app, exposition, serve
from shoal.metrics.ledger import JobsCollector
from shoal.metrics.middleware import JobMetrics, MetricsMiddleware
from shoal.metrics.worker import MAX_WORKER_LABELS, SAMPLE, WorkerMetrics
from shoal.middleware import Progress
from shoal.store import JobRecord, Ledger
from shoal.wire import Report
from tests.prometheus import require


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def job(pipeline: str = "faces", state: str = "running", job_id: str = "faces-1") -> JobRecord:
    return JobRecord(
        1,
        job_id,
        f"k-{job_id}",
        pipeline,
        "f1ng3r",
        "/p",
        "[]",
        "{}",
        "/out",
        state,
        0.0,
        0.0,
        None,
        0,
        False,
        None,
        None,
    )


def ok_row(item: str, start: float, end: float, seconds: str = '{"detect": 0.5}') -> list[Any]:
    return [item, "{}", start, end, seconds]


def test_batch_histogram_counts_weights_into_cumulative_buckets() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("shoal_test_seconds", "test", ["pipeline"], buckets=(0.1, 1.0))
    registry.register(histogram)
    histogram.observe(("p",), [(0.05, 1), (0.1, 2), (0.5, 3), (7.0, 4)])
    assert sample(registry, "shoal_test_seconds_bucket", pipeline="p", le="0.1") == 3  # le: 0.1 itself is in
    assert sample(registry, "shoal_test_seconds_bucket", pipeline="p", le="1.0") == 6
    assert sample(registry, "shoal_test_seconds_bucket", pipeline="p", le="+Inf") == 10
    assert sample(registry, "shoal_test_seconds_count", pipeline="p") == 10
    assert sample(registry, "shoal_test_seconds_sum", pipeline="p") == pytest.approx(0.05 + 0.2 + 1.5 + 28)


def test_worker_series_sample_big_reports_but_count_every_item() -> None:
    registry = CollectorRegistry()
    workers = WorkerMetrics(registry)
    rows = [ok_row(f"i{k}", 10.0, 10.002, '{"a": 0.001, "b": 0.001}') for k in range(1000)]
    workers.record("host:1", Report(rows, [{"id": "x", "error": {}}], took=2.0), "p")
    assert sample(registry, "shoal_worker_items_total", pipeline="p", worker="host:1", outcome="succeeded") == 1000
    assert sample(registry, "shoal_worker_items_total", pipeline="p", worker="host:1", outcome="failed") == 1
    assert sample(registry, "shoal_worker_busy_seconds_total", worker="host:1") == 2.0
    assert sample(registry, "shoal_item_duration_seconds_count", pipeline="p") == 1000
    assert sample(registry, "shoal_item_duration_seconds_sum", pipeline="p") == pytest.approx(2.0, rel=1e-3)
    assert sample(registry, "shoal_stage_duration_seconds_count", pipeline="p", stage="b") == 1000
    assert 0.9 < sample(registry, "shoal_worker_busy_ratio", worker="host:1") <= 1.0  # type: ignore[operator]


def test_small_reports_are_observed_item_by_item() -> None:
    registry = CollectorRegistry()
    workers = WorkerMetrics(registry)
    rows = [ok_row("fast", 0.0, 0.001), ok_row("slow", 0.0, 3.0)]
    assert len(rows) <= SAMPLE
    workers.record("host:1", Report(rows, [], took=3.001), "p")
    assert sample(registry, "shoal_item_duration_seconds_bucket", pipeline="p", le="0.001") == 1
    assert sample(registry, "shoal_item_duration_seconds_bucket", pipeline="p", le="2.5") == 1
    assert sample(registry, "shoal_item_duration_seconds_bucket", pipeline="p", le="5.0") == 2


def test_worker_labels_stay_bounded() -> None:
    registry = CollectorRegistry()
    workers = WorkerMetrics(registry)
    for pid in range(MAX_WORKER_LABELS + 10):
        workers.record(f"host:{pid}", Report([ok_row("a", 0, 1)], [], 1.0), "p")
    text = generate_latest(registry).decode()
    busy = [line for line in text.splitlines() if line.startswith("shoal_worker_busy_seconds_total{")]
    assert len(busy) == MAX_WORKER_LABELS + 1
    assert sample(registry, "shoal_worker_busy_seconds_total", worker="other") == 10


def test_middleware_counts_final_outcomes_from_where_a_resumed_job_started() -> None:
    registry = CollectorRegistry()
    middleware = MetricsMiddleware(JobMetrics(registry), WorkerMetrics(registry))
    progress = Progress(total=100, done=40, failed=2, retries=5)  # a resumed job
    middleware.before_run(job(), 2)
    middleware.on_progress(progress)
    assert sample(registry, "shoal_items_total", pipeline="faces", outcome="succeeded") == 0
    progress.done, progress.failed, progress.retries, progress.in_flight = 50, 3, 9, 8
    progress.workers_alive, progress.workers_busy = 2, 1
    middleware.on_progress(progress)
    assert sample(registry, "shoal_items_total", pipeline="faces", outcome="succeeded") == 10
    assert sample(registry, "shoal_items_total", pipeline="faces", outcome="failed") == 1
    assert sample(registry, "shoal_item_retries_total", pipeline="faces") == 4
    assert sample(registry, "shoal_items_pending", pipeline="faces") == 100 - 53 - 8
    assert sample(registry, "shoal_items_in_flight", pipeline="faces") == 8
    assert sample(registry, "shoal_workers_alive") == 2
    assert sample(registry, "shoal_workers_busy") == 1
    assert sample(registry, "shoal_pipeline_info", pipeline="faces", fingerprint="f1ng3r", shoal_version="0.1.0") == 1
    progress.done, progress.in_flight = 97, 0
    middleware.after_run(job(), progress, "finished")
    assert sample(registry, "shoal_items_total", pipeline="faces", outcome="succeeded") == 57
    assert sample(registry, "shoal_items_pending", pipeline="faces") == 0
    assert sample(registry, "shoal_workers_alive") == 0


def test_interrupted_run_leaves_the_rest_pending() -> None:
    registry = CollectorRegistry()
    middleware = MetricsMiddleware(JobMetrics(registry))
    progress = Progress(total=10, done=0)
    middleware.before_run(job(), 1)
    middleware.on_progress(progress)
    progress.done, progress.in_flight = 4, 3
    middleware.after_run(job(), progress, "interrupted")
    assert sample(registry, "shoal_items_pending", pipeline="faces") == 6
    assert sample(registry, "shoal_items_in_flight", pipeline="faces") == 0
    assert sample(registry, "shoal_workers_alive") is None  # workers elsewhere report their own


def test_jobs_by_state_come_from_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        for i, state in enumerate(["succeeded", "succeeded", "failed", "running"]):
            record = job(state=state, job_id=f"j{i}")
            fields = {k: getattr(record, k) for k in record.__dataclass_fields__ if k not in ("num", "key", "round")}
            ledger.open_job(record.key, lambda fields=fields: fields)
        ledger.claim("j3", f"{os.uname().nodename}:{os.getpid()}:abc")  # a live coordinator runs it
        registry = CollectorRegistry()
        registry.register(JobsCollector(ledger))
        assert sample(registry, "shoal_jobs", state="succeeded") == 2
        assert sample(registry, "shoal_jobs", state="failed") == 1
        assert sample(registry, "shoal_jobs", state="running") == 1
        assert sample(registry, "shoal_jobs", state="cancelled") == 0
        assert sample(registry, "shoal_jobs", state="completed_with_errors") == 0  # listed, though no job is in it
    finally:
        ledger.close()


def test_exposition_passes_promtool_lint() -> None:
    registry = CollectorRegistry()
    middleware = MetricsMiddleware(JobMetrics(registry), WorkerMetrics(registry))
    middleware.before_run(job(), 1)
    middleware.on_progress(Progress(total=3))
    middleware.after_report("host:1", Report([ok_row("a", 0.0, 0.2)], [], 0.2))
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain")
    lint = subprocess.run([require("promtool"), "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    openmetrics, kind = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert kind.startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n")


def test_endpoint_serves_and_frees_its_port() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry).set_workers(3)
    endpoint = serve(registry, "127.0.0.1", 0)
    try:
        response = httpx.get(endpoint.url, timeout=10)
        assert response.status_code == 200
        assert "shoal_workers_alive 3.0" in response.text
    finally:
        endpoint.close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do, past TIME_WAIT
        again.bind(("127.0.0.1", endpoint.port))  # the listening socket is closed for real


def test_a_busy_port_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}: the port is in use"):
            serve(CollectorRegistry(), "127.0.0.1", port)


def test_asgi_app_answers_with_the_registry() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry).set_workers(1)
    app = asgi_app(registry)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "query_string": b"", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert b"shoal_workers_alive 1.0" in sent[1]["body"]


def test_registries_are_made_by_processes_not_imports() -> None:
    from prometheus_client import REGISTRY

    import shoal.metrics.endpoint  # noqa: F401 - importing must register nothing globally

    names = {m.name for m in REGISTRY.collect()}
    assert not any(n.startswith("shoal") for n in names)


def test_two_jobs_of_one_pipeline_add_up_and_neither_overwrites_the_other() -> None:
    registry = CollectorRegistry()
    families = JobMetrics(registry)
    first, second = MetricsMiddleware(families), MetricsMiddleware(families)
    one, two = Progress(total=10), Progress(total=30)
    first.before_run(job(job_id="a"), 1)
    second.before_run(job(job_id="b"), 1)
    one.in_flight, two.in_flight = 2, 5
    first.on_progress(one)
    second.on_progress(two)
    assert sample(registry, "shoal_items_pending", pipeline="faces") == (10 - 2) + (30 - 5)
    assert sample(registry, "shoal_items_in_flight", pipeline="faces") == 2 + 5
    one.done, one.in_flight = 10, 0
    first.after_run(job(job_id="a"), one, "finished")  # the first ends: only its share goes
    assert sample(registry, "shoal_items_pending", pipeline="faces") == 30 - 5
    assert sample(registry, "shoal_items_in_flight", pipeline="faces") == 5
