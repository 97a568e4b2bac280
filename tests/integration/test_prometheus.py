"""A real Prometheus scrapes a real `shoal run --metrics-port`, a worker endpoint and a server-style
registry, using the shipped prometheus.yml (file service discovery) and alert rules; PromQL over
its HTTP API must agree with the ledger, and every dashboard expression must evaluate."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from shoal.metrics.http import Endpoint, serve
from shoal.metrics.ledger import JobsCollector
from shoal.metrics.worker import WorkerMetrics
from shoal.store import Ledger
from shoal.store.tokens import create_token
from shoal.wire import Report
from tests.helpers import shoal_cli
from tests.prometheus import Prometheus, dashboard_expressions, deploy_config, free_port

pytestmark = pytest.mark.integration

SLOW = """
import time
import shoal
pipeline = shoal.Pipeline("slow")

@pipeline.stage()
def parse(item):
    return {"n": int(item.read_text())}

@pipeline.stage(batch_size=2)
def work(items):
    time.sleep(0.08 * len(items))
    return [shoal.ItemError("multiple of 7") if i.result["n"] % 7 == 0 else {"ok": True} for i in items]
"""
ITEMS = 48


@dataclass
class Scraped:
    prometheus: Prometheus
    ledger: Ledger
    job_id: str
    worker_reports: list[Report]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    root = tmp_path_factory.mktemp("prometheus")
    run_port, worker_port, server_port = free_port(), free_port(), free_port()
    config = deploy_config(
        root,
        {
            "runs-test.yml": [f"127.0.0.1:{run_port}"],
            "workers-test.yml": [f"127.0.0.1:{worker_port}"],
            "server-test.yml": [f"127.0.0.1:{server_port}"],
        },
    )
    prometheus = Prometheus(config, root / "data").start()
    project = root / "project"
    project.mkdir()
    (project / "pipeline.py").write_text(SLOW)
    data = root / "data-items"
    data.mkdir()
    for i in range(ITEMS):
        (data / f"{i:03d}.txt").write_text(f"{i}\n")
    home = root / "home"
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    endpoints: list[Endpoint] = []
    try:
        workers, endpoint = WorkerMetrics.serve(worker_port, "127.0.0.1")  # as `shoal worker` will
        endpoints.append(endpoint)
        reports = [
            Report([["a", "{}", 1.0, 1.5, '{"work": 0.5}'], ["b", "{}", 2.0, 2.25, '{"work": 0.25}']], [], 0.75),
            Report([], [{"id": "c", "error": {"type": "ValueError"}}], 0.1),
        ]
        for report in reports:
            workers.record("node-1:4242", report, "remote")
        server = CollectorRegistry()  # as the web service's /metrics will
        server.register(JobsCollector(ledger))
        endpoints.append(serve(server, "127.0.0.1", server_port))
        # discovery reaches the scrapers in batches (every 5 s): wait for it before the short run
        assert prometheus.wait_for('up{job="shoal-workers"}', 1) == 1
        env = {"SHOAL_HOME": str(home), "SHOAL_RETRY_BACKOFF": "0"}
        result = shoal_cli(
            *("run", str(project), "-i", str(data), "-w", "2", "--retries", "1"),
            *("--metrics-port", str(run_port), "--metrics-host", "127.0.0.1", "--metrics-linger", "4"),
            cwd=root,
            env=env,
        )
        assert result.returncode == 1, result.stderr  # the multiples of 7 fail
        assert f"serving metrics at http://127.0.0.1:{run_port}/metrics" in result.stderr
        job_id = ledger.list_jobs(1)[0].id
        yield Scraped(prometheus, ledger, job_id, reports)
    finally:
        for endpoint in endpoints:
            endpoint.close()
        ledger.close()
        prometheus.stop()


def last(expr: str) -> str:
    """The latest sample in the last 5 minutes, whether or not the target has gone since."""
    return f"sum(last_over_time({expr}[5m]))"


def test_item_counts_agree_with_the_ledger(scraped: Scraped) -> None:
    counts = scraped.ledger.counts(scraped.job_id)
    assert counts == {"pending": 0, "succeeded": ITEMS - 7, "failed": 7, "cancelled": 0}
    prom = scraped.prometheus
    assert (
        prom.wait_for(last('shoal_items_total{job="shoal-runs", outcome="succeeded"}'), counts["succeeded"])
        == (counts["succeeded"])
    )
    assert prom.wait_for(last('shoal_items_total{job="shoal-runs", outcome="failed"}'), 7) == 7
    retries = sum(e["kind"] == "retry" for e in scraped.ledger.events(scraped.job_id))
    assert prom.wait_for(last('shoal_item_retries_total{job="shoal-runs"}'), retries) == retries
    # each succeeded item has one timing; worker attempts count retries too
    assert (
        prom.wait_for(last('shoal_item_duration_seconds_count{job="shoal-runs"}'), counts["succeeded"])
        == (counts["succeeded"])
    )
    attempts = prom.value(last('shoal_worker_items_total{job="shoal-runs"}'))
    assert attempts == counts["succeeded"] + counts["failed"] + retries
    assert prom.value(last('shoal_items_pending{job="shoal-runs"}')) == 0
    assert prom.value('max(max_over_time(shoal_workers_alive{job="shoal-runs"}[5m]))') == 2


def test_stage_histograms_and_pipeline_info(scraped: Scraped) -> None:
    prom = scraped.prometheus
    succeeded = scraped.ledger.counts(scraped.job_id)["succeeded"]
    for stage in ("parse", "work"):
        expr = last(f'shoal_stage_duration_seconds_count{{job="shoal-runs", stage="{stage}"}}')
        assert prom.wait_for(expr, succeeded) == succeeded
    info = prom.query('last_over_time(shoal_pipeline_info{job="shoal-runs"}[5m])')
    job = scraped.ledger.get_job(scraped.job_id)
    assert [r["metric"]["fingerprint"] for r in info] == [job.fingerprint]


def test_jobs_by_state_agree_with_the_ledger(scraped: Scraped) -> None:
    prom = scraped.prometheus
    assert prom.wait_for('max(shoal_jobs{job="shoal-server", state="completed_with_errors"})', 1) == 1
    assert prom.value('max(shoal_jobs{job="shoal-server", state="running"})') == 0


def test_worker_endpoint_series(scraped: Scraped) -> None:
    prom = scraped.prometheus
    assert prom.wait_for('sum(shoal_worker_items_total{job="shoal-workers", outcome="succeeded"})', 2) == 2
    assert prom.value('sum(shoal_worker_items_total{job="shoal-workers", outcome="failed"})') == 1
    assert prom.value('sum(shoal_worker_busy_seconds_total{job="shoal-workers"})') == pytest.approx(0.85)
    assert prom.value('sum(shoal_item_duration_seconds_sum{job="shoal-workers"})') == pytest.approx(0.75)
    assert prom.value('sum(shoal_item_duration_seconds_bucket{job="shoal-workers", le="0.25"})') == 1
    assert prom.value('up{job="shoal-workers"}') == 1


def test_alert_rules_load_and_evaluate(scraped: Scraped) -> None:
    groups = scraped.prometheus.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    expected = {"ShoalWorkerDown", "ShoalNoLiveWorkers", "ShoalErrorRateHigh", "ShoalQueueGrowingWithoutProgress"}
    expected |= {
        "ShoalPredictFailing",
        "ShoalPredictLatencyHigh",
        "ShoalPredictOverloaded",
        "ShoalPredictNoReadyReplica",
    }
    assert set(rules) == expected
    assert all(r["health"] in ("ok", "unknown") for r in rules.values()), rules


def test_every_dashboard_expression_evaluates(scraped: Scraped) -> None:
    for title, expr in dashboard_expressions():
        answer = scraped.prometheus._client.get("/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", (title, expr, answer)


def test_discovery_uses_the_target_files(scraped: Scraped) -> None:
    active = scraped.prometheus.api("targets")["activeTargets"]
    jobs = {t["labels"]["job"] for t in active}
    assert {"shoal-runs", "shoal-workers", "shoal-server"} <= jobs
    assert all(re.match(r"127\.0\.0\.1:\d+$", t["labels"]["instance"]) for t in active)


def test_a_server_that_wants_a_token_is_scraped_with_the_one_in_secrets(
    tmp_path: Path, serve: Callable[..., Any]
) -> None:
    server = serve(projects=[], auth=True)  # /metrics wants a token, like every route
    token = create_token(server.app.state.parts.ledger, "prometheus")
    address = server.url.removeprefix("http://")
    folder = tmp_path / "monitoring"
    config = deploy_config(folder, {"token-server-test.yml": [address], "server-test.yml": [address]})
    (folder / "secrets").mkdir()
    (folder / "secrets" / "shoal-server.token").write_text(token + "\n")  # as deploy/monitoring/README.md says
    prometheus = Prometheus(config, folder / "data").start()
    try:
        assert prometheus.wait_for('up{job="shoal-server-token"}', 1) == 1
        assert prometheus.wait_for('up{job="shoal-server"}', 0) == 0  # the same server, asked without a token
        assert prometheus.query('shoal_jobs{job="shoal-server-token"}')
    finally:
        prometheus.stop()
