"""Shared fixtures: throw-away projects, an isolated shoal home, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines import EngineUnderTest, engine_for, require_service

MakeProject = Callable[..., Path]

#: test files that share one machine-wide resource, so never run beside each other under xdist:
#: the Docker engine's images and stacks, the network namespaces of the test hosts, and the
#: RabbitMQ server, which test_cluster stops and starts again (every client of it sees that)
SHARED = {
    "tests/deploy/test_image.py": "docker",
    "tests/deploy/test_compose.py": "docker",
    "tests/deploy/test_ansible.py": "hosts",
    "tests/integration/test_multihost.py": "hosts",
    "tests/integration/test_cluster.py": "rabbitmq",
    "tests/integration/test_conformance.py": "rabbitmq",
    "tests/integration/test_code_bundles.py": "rabbitmq",
    "tests/integration/test_workers_view.py": "rabbitmq",
    "tests/integration/test_result_watch.py": "rabbitmq",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `pytest -n N` (make test) a test file runs whole, in order, in one process (its module
    fixtures are made once), and the files sharing a resource (SHARED) in the same one."""
    from xdist.scheduler import LoadScopeScheduling

    class BySharedResource(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SHARED.get(path, path)

    return BySharedResource(config, log)


@pytest.fixture(autouse=True, scope="session")
def _user_data_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The per-user data folder (the default shoal home) is a throw-away one: no test touches the
    real one, nor sees jobs of the person running the tests."""
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("user-data"))
    yield
    if before is None:
        del os.environ["XDG_DATA_HOME"]
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test from its own folder, with its own ledger and run folders."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path / "shoal-runs"))
    for name in list(os.environ):
        if name.startswith("SHOAL_") and name != "SHOAL_HOME":
            monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """Write a project folder: ``make_project(code, name="p", toml=None)`` returns its path."""

    def make(code: str, name: str = "project", toml: str | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "pipeline.py").write_text(textwrap.dedent(code))
        if toml is not None:
            (folder / "shoal.toml").write_text(textwrap.dedent(toml))
        return folder

    return make


@pytest.fixture
def inputs(tmp_path: Path) -> Callable[[int], Path]:
    """A URI list of ``n`` small text files; returns the list's path."""

    def make(n: int, name: str = "items") -> Path:
        folder = tmp_path / f"{name}-files"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            (folder / f"item-{i:04d}.txt").write_text(f"{i}\n")
        listing = tmp_path / f"{name}.txt"
        listing.write_text("".join(f"{folder}/item-{i:04d}.txt\n" for i in range(n)))
        return listing

    return make


@pytest.fixture
def no_stray_workers() -> Iterator[None]:
    """Fail a test that leaves worker processes behind."""
    yield
    stray = subprocess.run(["pgrep", "-f", "shoal.engines.local_worker"], capture_output=True, text=True).stdout.split()
    mine = [pid for pid in stray if _is_descendant(int(pid))]
    assert not mine, f"worker processes left running: {mine}"


def _is_descendant(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    parent = int(stat.rsplit(")", 1)[1].split()[1])
    return parent == os.getpid()


ENGINES = ["local", "celery-redis", "celery-rabbitmq"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, home: Path) -> Iterator[EngineUnderTest]:
    """Each engine in turn: the conformance suite runs unchanged against all of them."""
    under_test = engine_for(request.param, home)
    yield under_test
    under_test.stop_workers()


@pytest.fixture
def serve(home: Path) -> Iterator[Callable[..., Any]]:
    """Start a server: ``serve(projects=[...], **settings)``; every one is stopped after the test."""
    from tests.web_server import LiveServer  # the web extra: imported only by tests that serve

    started: list[LiveServer] = []

    def start(**settings: Any) -> Any:
        server = LiveServer(**settings).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of this test's own on the real PostgreSQL server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    require_service(5432)
    name = f"shoal_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
