"""A Docker engine and images made on this machine, for the container tests: no registry is needed.

What cannot be pulled is made: a Debian bookworm base by debootstrap (reused when it is there),
a Python base from it (deploy/compose/local/python), shoal's image on that base, and the service
images of deploy/compose/compose.local.yaml. Without an engine, as root the tests install Debian's
docker.io, docker-compose and debootstrap and start dockerd (as CI does); otherwise they skip
saying how to get them, and under CI (CI=true) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
LOCAL_BASE = "localhost/localbase:bookworm"  #: Debian bookworm minbase, made by debootstrap
PYTHON_BASE = "localhost/shoal-python:bookworm"  #: python3 with venv on LOCAL_BASE: what python:3.12-slim gives
IMAGE = "localhost/shoal:test"
PACKAGES = ("docker.io", "docker-compose", "debootstrap")
HOW = (
    f"run the tests as root (they install {', '.join(PACKAGES)} and start dockerd), or "
    f"`sudo apt-get install -y {' '.join(PACKAGES)}` and start dockerd "
    "(`sudo setsid dockerd >/var/log/dockerd.log 2>&1 &`)"
)
BUILD_TIMEOUT = 900  #: seconds: shoal's image downloads a few hundred MB of wheels on a fresh machine


def unavailable(message: str) -> NoReturn:
    """Skip, saying how to fix it; fail under CI, where nothing may be skipped silently."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(*args: str, timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured as text; a failure shows what it printed."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return run("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0


def _install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable(f"needs {', '.join(packages)}: {HOW}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-q", timeout=300, env=env)
    run("apt-get", "install", "-y", "-q", *packages, timeout=600, env=env)


def ensure_engine(log_dir: Path) -> None:
    """A Docker engine that answers: this machine's, or dockerd started here (it keeps running)."""
    if _engine_answers():
        return
    missing = [
        p
        for p, tool in zip(PACKAGES, ("dockerd", "docker-compose", "debootstrap"), strict=True)
        if not shutil.which(tool)
    ]
    if missing:
        _install(*missing)
    if os.geteuid() != 0:
        unavailable(f"the Docker engine does not answer and only root can start it: {HOW}")
    log = (log_dir / "dockerd.log").open("ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _engine_answers():
        if time.monotonic() > deadline:
            unavailable(f"dockerd did not answer within 60 s: see {log_dir / 'dockerd.log'}")
        time.sleep(0.5)


def compose_command() -> list[str]:
    """`docker compose` (the plugin) where it exists, else Debian's docker-compose 1.29."""
    if run("docker", "compose", "version", check=False, timeout=20).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        _install("docker-compose")
    return ["docker-compose"]


def image_exists(name: str) -> bool:
    return run("docker", "image", "inspect", name, check=False, timeout=30).returncode == 0


def ensure_local_base(work: Path) -> None:
    """LOCAL_BASE, made by debootstrap (about 30 s) unless it is there already."""
    if image_exists(LOCAL_BASE):
        return
    if shutil.which("debootstrap") is None:
        _install("debootstrap")
    rootfs = work / "rootfs"
    run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian", timeout=900)
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        run("docker", "import", "-", LOCAL_BASE, stdin=tar.stdout, timeout=300)
    shutil.rmtree(rootfs, ignore_errors=True)


def build_python_base() -> None:
    """PYTHON_BASE from LOCAL_BASE, trusting this machine's CA bundle (a TLS-intercepting proxy's CA)."""
    with tempfile.TemporaryDirectory() as context:
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        target = Path(context, "ca-certificates.crt")
        if bundle.is_file():
            shutil.copyfile(bundle, target)
        else:
            target.write_text("")
        dockerfile = COMPOSE_DIR / "local" / "python" / "Dockerfile"
        run(
            "docker",
            "build",
            "-q",
            "-t",
            PYTHON_BASE,
            "--build-arg",
            f"BASE={LOCAL_BASE}",
            "-f",
            str(dockerfile),
            context,
            timeout=BUILD_TIMEOUT,
        )


def build_image() -> tuple[dict[str, Any], float]:
    """shoal's image on PYTHON_BASE, as the tests use it; its `docker image inspect` and build seconds."""
    start = time.monotonic()
    run("docker", "build", "-q", "-t", IMAGE, "--build-arg", f"BASE={PYTHON_BASE}", str(ROOT), timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - start
    (info,) = json.loads(run("docker", "image", "inspect", IMAGE).stdout)
    return info, seconds


_prepared: dict[str, Any] = {}


def prepare(work: Path) -> tuple[list[str], dict[str, Any]]:
    """Engine, bases and shoal's image, once per session: the compose command and the image's
    `docker image inspect` data."""
    if _prepared:
        return _prepared["compose"], _prepared["image"]
    ensure_engine(work)
    compose = compose_command()
    ensure_local_base(work)
    build_python_base()
    info, seconds = build_image()
    print(f"\nshoal image {IMAGE}: {info['Size'] / 1e6:.0f} MB, built in {seconds:.0f} s")
    _prepared.update(compose=compose, image=info)
    return compose, info
