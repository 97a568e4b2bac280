"""A real Prometheus for tests: Debian's `prometheus` on a free loopback port, with a temporary
configuration and storage folder, stopped when the test is done.

A test that needs it skips with the way to get it; under CI (CI=true) a missing tool fails the
test instead, so nothing is silently skipped there (.ci/run installs the package).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"
INSTALL = "apt-get install -y prometheus (Debian's package brings prometheus and promtool)"


def require(tool: str) -> str:
    """The path of ``tool`` (prometheus or promtool), or skip (fail under CI) saying how to get it."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


#: Grafana variables, replaced by values that select everything, so an expression can be run as is
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$pipeline": ".*", "$node": ".*"}


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana variables filled in) for every target of the dashboard."""
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "shoal.json").read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unknown variable in {expr}"
            found.append((panel["title"], expr))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_config(folder: Path, targets: dict[str, list[str]], interval: str = "1s") -> Path:
    """The shipped prometheus.yml, rewritten for a test: fast scrapes, target files in ``folder``."""
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(MONITORING / "prometheus" / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        for sd in job["file_sd_configs"]:
            sd["files"] = [str(folder / "targets" / Path(name).name) for name in sd["files"]]
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    for name, addresses in targets.items():
        (folder / "targets" / name).write_text(yaml.safe_dump([{"targets": addresses}]))
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """One Prometheus process; ``query`` asks its HTTP API."""

    def __init__(self, config: Path, storage: Path) -> None:
        self.binary = require("prometheus")
        self.config, self.storage = config, storage
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = storage.parent / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(base_url=self.url, timeout=10)

    def start(self, timeout: float = 60) -> Prometheus:
        self.storage.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=30d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if self._client.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self._client.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def api(self, path: str, **params: str) -> Any:
        answer = self._client.get(f"/api/v1/{path}", params=params).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 60) -> float | None:
        """Poll until ``expr`` equals ``expected`` (scrapes come once a second); returns the last value."""
        deadline = time.monotonic() + timeout
        value = self.value(expr)
        while value != expected and time.monotonic() < deadline:
            time.sleep(0.5)
            value = self.value(expr)
        return value
