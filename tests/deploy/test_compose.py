"""deploy/compose: the stack checked against the compose specification, then run for real.

The real run builds the image and the service images of compose.local.yaml from a base made here
(see containers.py), brings the stack up with two workers, submits the faces example through the
API as an upload, checks its results and artifacts, scales to three workers and sees the third
take work, kills a worker container mid-job and sees nothing lost or doubled, and tears it all
down. A second stack runs a job over RabbitMQ (the `rabbitmq` profile).
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from shoal.engines.celery.engine import DISCOVER_EVERY
from tests.deploy import containers
from tests.deploy.containers import COMPOSE_DIR, IMAGE, ROOT, run

pytestmark = pytest.mark.integration

COMPOSE_FILES = ("compose.yaml", "compose.local.yaml")
LOCAL_SERVICES = ("redis", "postgres", "prometheus", "node-exporter", "rabbitmq")
OFFICIAL_IMAGES = {
    "redis": "redis:7",
    "rabbitmq": "rabbitmq:3-management",
    "postgres": "postgres:16",
    "prometheus": "prom/prometheus:",
    "grafana": "grafana/grafana:",
    "node-exporter": "prom/node-exporter:",
}
FINAL_STATES = {"succeeded", "completed_with_errors", "failed", "cancelled"}
MONITORING = ROOT / "deploy" / "monitoring"


def spec(name: str = "compose.yaml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / name).read_text())
    return loaded


# --- the files, without an engine ---------------------------------------------------------------


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_follows_the_compose_specification(name: str) -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    if not tool.exists():
        containers.unavailable("check-jsonschema is not installed: pip install -e '.[test]'")
    done = run(str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_DIR / name), check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_services_use_the_official_images() -> None:
    services = spec()["services"]
    for service, image in OFFICIAL_IMAGES.items():
        assert services[service]["image"].startswith(image), service
    local = spec("compose.local.yaml")["services"]
    assert set(local) <= set(services)
    for service, override in local.items():
        if "build" in override:
            assert (COMPOSE_DIR / override["build"]["context"] / "Dockerfile").is_file(), service


def test_nothing_is_published_beyond_loopback_unless_asked() -> None:
    for name, service in spec()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("${SHOAL_BIND:-127.0.0.1}:"), f"{name} publishes {port}"


def test_secrets_come_from_an_env_file_git_ignores() -> None:
    """Every required variable is in .env.example, no password has a default, and .env is ignored."""
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (COMPOSE_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert required <= listed, f"not in .env.example: {required - listed}"
    assert not re.search(r"\$\{\w*PASSWORD\w*:-", text), "a password with a default"
    assert all(not value for value in re.findall(r"^\w*PASSWORD=(.*)$", example, re.MULTILINE))
    ignored = run("git", "check-ignore", "-q", str(COMPOSE_DIR / ".env"), check=False, cwd=ROOT)
    assert ignored.returncode == 0, "git does not ignore deploy/compose/.env"


def test_every_service_is_health_checked_and_waited_for() -> None:
    services = spec()["services"]
    for name, service in services.items():
        if name not in ("server", "worker", "prometheus-token"):  # shoal's image has its own check
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency == "prometheus-token" else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}"


def test_monitoring_comes_from_deploy_monitoring() -> None:
    """Prometheus runs prometheus.dns.yml, whose names are the stack's; Grafana gets every
    variable its provisioning files use, and the dashboards where the provider looks."""
    services = spec()["services"]
    prometheus = services["prometheus"]
    (config,) = [arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")]
    mounts = dict(volume.split(":")[:2][::-1] for volume in prometheus["volumes"])
    assert (COMPOSE_DIR / mounts[str(Path(config).parent)] / Path(config).name).is_file()
    dns = yaml.safe_load((MONITORING / "prometheus" / "prometheus.dns.yml").read_text())
    names = {name for job in dns["scrape_configs"] for sd in job["dns_sd_configs"] for name in sd["names"]}
    aliases = {a for s in services.values() for a in s.get("networks", {}).get("default", {}).get("aliases", [])}
    assert {"shoal-server-token", "shoal-worker", "node-exporter"} <= aliases | set(services)
    assert names - aliases - set(services) == {"shoal-server"}  # a server without tokens: none here
    grafana = services["grafana"]
    used = set()
    for path in (MONITORING / "grafana" / "provisioning").rglob("*.yml"):
        used |= set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert used <= set(grafana["environment"]), f"Grafana lacks {used - set(grafana['environment'])}"
    mounts = dict(volume.split(":")[:2][::-1] for volume in grafana["volumes"])
    dashboards = COMPOSE_DIR / mounts[grafana["environment"]["SHOAL_DASHBOARDS_DIR"]]
    assert (dashboards / "shoal.json").is_file()
    assert (COMPOSE_DIR / mounts["/etc/grafana/provisioning"] / "datasources").is_dir()


# --- the stack, for real ------------------------------------------------------------------------


class Stack:
    """One compose project of deploy/compose, under a name of its own, with its own .env."""

    def __init__(self, compose: list[str], env_file: Path, profiles: tuple[str, ...] = ()) -> None:
        self.project = f"shoaltest{secrets.token_hex(4)}"
        self.base = [*compose, "-p", self.project, "--env-file", str(env_file)]
        self.base += [arg for name in COMPOSE_FILES for arg in ("-f", name)]
        self.base += [arg for profile in profiles for arg in ("--profile", profile)]

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*self.base, *args, timeout=timeout, check=check, cwd=COMPOSE_DIR)

    def containers(self, service: str) -> list[dict[str, Any]]:
        """The service's running containers, by their number (worker_1, worker_2, ...)."""
        ids = self("ps", "-q", service).stdout.split()
        found = json.loads(run("docker", "inspect", *ids).stdout) if ids else []
        running = [c for c in found if c["State"]["Running"]]
        return sorted(running, key=lambda c: int(c["Config"]["Labels"]["com.docker.compose.container-number"]))

    def url(self, service: str, port: int) -> str:
        return "http://" + self("port", service, str(port)).stdout.strip()

    def wait_healthy(self, *services: str, count: int = 1, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for service in services:
            while True:
                found = self.containers(service)
                states = [c["State"].get("Health", {}).get("Status", "healthy") for c in found]
                if len(found) >= count and all(s == "healthy" for s in states):
                    break
                assert time.monotonic() < deadline, f"{service}: {states} after {timeout} s\n{self.logs(service)}"
                time.sleep(1)

    def logs(self, *services: str) -> str:
        return self("logs", "--no-color", "--tail", "60", *services, check=False).stdout

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "-t", "10", timeout=180, check=False)
        left = run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").stdout
        volumes = run("docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.project}")
        assert not left.strip(), "down -v left containers behind"
        assert not volumes.stdout.strip(), "down -v left volumes behind"


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The compose command, with shoal's image and the local service images built."""
    command, _ = containers.prepare(tmp_path_factory.mktemp("docker"))
    env = write_env(tmp_path_factory.mktemp("env") / ".env")
    Stack(command, env)("build", *LOCAL_SERVICES, timeout=containers.BUILD_TIMEOUT)
    return command


def write_env(path: Path, **extra: str) -> Path:
    """A .env as a user writes it from .env.example: fresh passwords, ports the engine picks."""
    values = {
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "BROKER_PASSWORD": secrets.token_hex(12),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(12),
        "SHOAL_BROKER_URL": "redis://:${BROKER_PASSWORD}@redis:6379/0",
        "SHOAL_IMAGE": IMAGE,
        "SHOAL_BASE": containers.PYTHON_BASE,
        "SHOAL_LOCAL_BASE": containers.LOCAL_BASE,
        "SHOAL_WORKER_CONCURRENCY": "1",
        "SHOAL_WORKER_STOP_GRACE": "10s",
        **{port: "0" for port in ("SHOAL_HTTP_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT", "RABBITMQ_UI_PORT")},
        **extra,
    }
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def make_images(folder: Path, count: int) -> list[Path]:
    run(sys.executable, str(ROOT / "examples" / "faces" / "make_data.py"), "--count", str(count), "--out", str(folder))
    return sorted(folder.iterdir())


class Api:
    """The server's REST API, with a token made by `shoal token create` in its container."""

    def __init__(self, stack: Stack) -> None:
        token = stack("exec", "-T", "server", "shoal", "token", "create", "test").stdout.strip().splitlines()[-1]
        self.http = httpx.Client(
            base_url=stack.url("server", 8000), headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def close(self) -> None:
        self.http.close()

    def submit(self, files: list[Path]) -> str:
        upload = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in files]
        answer = self.http.post(
            "/api/v1/jobs/upload", data={"pipeline": "faces", "options": json.dumps({"new": True})}, files=upload
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/api/v1/jobs/{job_id}")
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def wait(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not until(job := self.job(job_id)):
            assert job["state"] not in FINAL_STATES or until(job), f"job ended first: {job}"
            assert time.monotonic() < deadline, f"not there after {timeout} s: {job}"
            time.sleep(0.2)
        return job

    def requeued(self, job_id: str, item_ids: list[str]) -> dict[str, str]:
        """{item: why} for the items sent again, without counting an attempt, because their chunk was lost."""
        found = {}
        for item_id in item_ids:
            item = self.http.get(f"/api/v1/jobs/{job_id}/items/{quote(item_id, safe='')}").json()
            for attempt in item["attempts_log"]:
                if attempt["kind"] == "requeued":
                    found[item_id] = re.sub(r"^chunk \S+ ", "", attempt["message"])
        return found

    def outcome(self, job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """(results.jsonl records, errors.csv rows) of a finished job."""
        results = self.http.get(f"/api/v1/jobs/{job_id}/results.jsonl")
        errors = self.http.get(f"/api/v1/jobs/{job_id}/errors.csv")
        assert results.status_code == errors.status_code == 200
        return [json.loads(line) for line in results.text.splitlines()], list(csv.DictReader(io.StringIO(errors.text)))


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in FINAL_STATES


def assert_each_item_once(api: Api, job_id: str, files: list[Path]) -> list[dict[str, Any]]:
    """Every uploaded file is in the results or the errors exactly once; the broken ones failed."""
    job = api.job(job_id)
    results, errors = api.outcome(job_id)
    names = [Path(r["input"]).name for r in results] + [Path(e["input"]).name for e in errors]
    assert sorted(names) == sorted(p.name for p in files), "items lost or doubled"
    broken = {p.name for p in files if p.name.startswith("broken-")}  # make_data.py's deliberate failures
    assert {Path(e["input"]).name for e in errors} == broken, errors
    assert job["state"] == "completed_with_errors"
    assert job["counts"] == {
        "total": len(files), "succeeded": len(files) - len(broken), "failed": len(broken), "pending": 0, "cancelled": 0,
    }  # fmt: skip
    return results


def hosts(results: list[dict[str, Any]]) -> set[str]:
    """The containers that ran the items: a result's worker is host:pid, the host the container's."""
    return {r["worker"].rsplit(":", 1)[0] for r in results}


@pytest.mark.timeout(1800)
def test_stack_runs_scales_and_loses_nothing_when_a_worker_dies(compose: list[str], tmp_path: Path) -> None:
    stack = Stack(compose, write_env(tmp_path / ".env"))
    small = make_images(tmp_path / "small", 48)
    large = make_images(tmp_path / "large", 240)
    start, api = time.monotonic(), None
    try:
        stack("up", "-d", "--no-build", "--scale", "worker=2", timeout=600)
        stack.wait_healthy("redis", "postgres", "server", "prometheus", "node-exporter")
        stack.wait_healthy("worker", count=2)
        api = Api(stack)

        # The faces example, uploaded: results, errors and artifacts, from both workers.
        first = api.submit(small)
        api.wait(first, lambda job: job["counts"]["succeeded"] > 0 or finished(job))
        to_first_result = time.monotonic() - start
        api.wait(first, finished)
        results = assert_each_item_once(api, first, small)
        workers = {c["Config"]["Hostname"] for c in stack.containers("worker")}
        assert hosts(results) <= workers
        artifact = api.http.get(f"/api/v1/jobs/{first}/artifacts/{results[0]['id']}/annotated.jpg")
        assert artifact.status_code == 200
        assert artifact.content[:2] == b"\xff\xd8"  # a JPEG, written by a worker into the shared run folder
        check_prometheus_scrapes(stack)

        # A third worker, found by the server within DISCOVER_EVERY seconds.
        stack("up", "-d", "--no-build", "--scale", "worker=3", "--no-recreate", timeout=300)
        stack.wait_healthy("worker", count=3)
        victim, *_, third = stack.containers("worker")
        wait_for_log(third["Id"], "ready.")
        time.sleep(DISCOVER_EVERY + 2)

        # Kill a worker while it holds chunks of the job: its chunks are sent to the others.
        second = api.submit(large)
        api.wait(second, lambda job: job["counts"]["succeeded"] > 0)
        wait_for_log(victim["Id"], f"shoal.chunk[{second}.")
        run("docker", "kill", victim["Id"])
        at_kill = api.job(second)
        assert not finished(at_kill), "the job ended before the worker was killed"
        api.wait(second, finished, timeout=300)
        results = assert_each_item_once(api, second, large)
        assert third["Config"]["Hostname"] in hosts(results), "the third worker took no work"
        # The victim may have finished its chunk just before the kill: then nothing needed sending
        # again, and the job's outcome (every item once) is the whole check.
        requeued = api.requeued(second, [r["id"] for r in results])
        print(
            f"\nup to first result: {to_first_result:.1f} s; killed {victim['Name']} at {at_kill['counts']};"
            f" {len(requeued)} of its items sent to the others ({sorted(set(requeued.values()))})"
        )
    except BaseException:
        print(stack.logs())
        raise
    finally:
        if api is not None:
            api.close()
        stack.down()


def check_prometheus_scrapes(stack: Stack) -> None:
    """Prometheus finds the server (with its token), both workers and the node exporter by DNS."""
    deadline = time.monotonic() + 60
    while True:
        targets = httpx.get(stack.url("prometheus", 9090) + "/api/v1/targets").json()["data"]["activeTargets"]
        up = sorted(t["labels"]["job"] for t in targets if t["health"] == "up")
        if up == ["node", "shoal-server-token", "shoal-workers", "shoal-workers"]:
            return
        assert time.monotonic() < deadline, f"targets up: {up}; all: {targets}"
        time.sleep(2)


def wait_for_log(container: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        logs = run("docker", "logs", container)
        if text in logs.stdout + logs.stderr:
            return
        assert time.monotonic() < deadline, f"{text!r} not in the logs of {container} after {timeout} s"
        time.sleep(0.2)


@pytest.mark.timeout(900)
def test_rabbitmq_profile_runs_a_job(compose: list[str], tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", SHOAL_BROKER_URL="amqp://shoal:${BROKER_PASSWORD}@rabbitmq:5672//")
    stack = Stack(compose, env, profiles=("rabbitmq",))
    files = make_images(tmp_path / "images", 48)
    try:
        stack("up", "-d", "--no-build", "rabbitmq", "server", "worker", timeout=600)
        stack.wait_healthy("rabbitmq", "server", "worker")
        wait_for_log(stack.containers("worker")[0]["Id"], "ready.", timeout=120)
        api = Api(stack)
        try:
            job = api.submit(files)
            api.wait(job, finished)
            assert_each_item_once(api, job, files)
        finally:
            api.close()
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.down()
