"""deploy/monitoring: promtool accepts the configurations and rules, the alert rules pass their
own unit tests, every dashboard expression parses, and the dashboard JSON is well formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus import MONITORING, dashboard_expressions, require

PROMETHEUS = MONITORING / "prometheus"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "shoal.json"
PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.dns.yml"])
def test_promtool_accepts_the_configuration(config: str, tmp_path: Path) -> None:
    deployed = shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    (deployed / "secrets" / "shoal-server.token").write_text("shoal_token_for_prometheus\n")  # as the README says
    result = promtool("check", "config", config, cwd=deployed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_configuration_discovers_targets_rather_than_naming_them() -> None:
    for name in ("prometheus.yml", "prometheus.dns.yml"):
        config = yaml.safe_load((PROMETHEUS / name).read_text())
        for job in config["scrape_configs"]:
            assert "static_configs" not in job, (name, job["job_name"])
            assert job.get("file_sd_configs") or job.get("dns_sd_configs"), (name, job["job_name"])


def test_promtool_accepts_the_rules_and_they_pass_their_tests() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule (no server needed)."""
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    rules = [{"record": f"dashboard:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert key in dashboard, key
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        _check_panel(panel, variables)
        grid = panel["gridPos"]
        xs, ys = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        cells = {(x, y) for x in xs for y in ys}
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells


def _check_panel(panel: dict[str, Any], variables: dict[str, Any]) -> None:
    assert panel["type"] in PANEL_TYPES, panel["type"]
    grid = panel["gridPos"]
    assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in ("x", "y", "w", "h")), grid
    assert grid["w"] > 0, grid
    assert grid["x"] + grid["w"] <= 24, grid
    if panel["type"] == "row":
        return
    assert panel["title"]
    assert panel["datasource"]["uid"] == "${datasource}"
    refs = [t["refId"] for t in panel["targets"]]
    assert refs, panel["title"]
    assert len(refs) == len(set(refs)), panel["title"]
    for target in panel["targets"]:
        assert target["datasource"]["uid"] == "${datasource}"
        for used in re.findall(r"\$(\w+)", target["expr"]):
            assert used.startswith("__") or used in variables, f"{panel['title']}: undefined ${used}"


def test_dashboard_covers_what_operators_need() -> None:
    text = " ".join(e for _, e in dashboard_expressions())
    for metric in (
        "shoal_items_total",
        "shoal_item_duration_seconds_bucket",
        "shoal_items_pending",
        "shoal_worker_busy_seconds_total",
        "shoal_workers_alive",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_network_receive_bytes_total",
    ):
        assert metric in text, metric


SERVING_ALERTS = {
    "ShoalPredictFailing",
    "ShoalPredictLatencyHigh",
    "ShoalPredictOverloaded",
    "ShoalPredictNoReadyReplica",
}


def test_every_alert_has_its_own_test_case() -> None:
    """Each rule in alerts.yml fires in some case of alerts.test.yml, the serving ones included."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    assert names >= SERVING_ALERTS
    cases = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == names


def test_dashboard_covers_online_predictions() -> None:
    """A row of panels for served pipelines: requests by outcome, latency p50/p99, batch size,
    wait and seconds, queue depth, ready replicas, model load seconds."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in dashboard["panels"]}
    assert "Online predictions" in panels
    expected = {
        "Predict requests per second by outcome": "sum by (pipeline, outcome) (rate(shoal_predict_requests_total",
        "Predict latency p50 and p99": "(0.99, sum by (le, pipeline) (rate(shoal_predict_latency_seconds_bucket",
        "Batch size": "shoal_predict_batch_size_sum",
        "Batch wait p50 and p99": "shoal_predict_batch_wait_seconds_bucket",
        "Batch seconds p50 and p99": "shoal_predict_batch_seconds_bucket",
        "Predict queue depth": "shoal_predict_queue_depth",
        "Ready replicas by version": "shoal_predict_replicas",
        "Model load seconds": "shoal_predict_model_load_seconds",
    }
    for title, metric in expected.items():
        assert metric in panels[title], title
    assert "histogram_quantile(0.50" in panels["Predict latency p50 and p99"]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "pipeline")
    assert "shoal_predict_requests_total" in variable["definition"]  # a server serving only online lists its pipelines


def test_serving_series_in_the_dashboard_and_rules_are_ones_shoal_exports() -> None:
    """Every shoal_predict_* series the dashboard and the rules use is one the server registers."""
    from prometheus_client import CollectorRegistry

    from shoal.serving.metrics import ServingMetrics

    registry = CollectorRegistry()
    ServingMetrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {family.name + end for family in registry.collect() for end in suffixes[family.type]}
    text = " ".join(e for _, e in dashboard_expressions()) + (PROMETHEUS / "alerts.yml").read_text()
    used = set(re.findall(r"shoal_predict_[a-z_]+", text))
    assert len(used) >= 10
    assert used <= exported, used - exported


def test_grafana_provisioning_names_no_address() -> None:
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "${PROMETHEUS_URL}"
    assert datasource["datasources"][0]["uid"]
    providers = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/shoal.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "${SHOAL_DASHBOARDS_DIR}"
