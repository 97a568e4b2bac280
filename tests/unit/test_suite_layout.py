"""The suite's own layout: tests that stop a shared server never run beside that server's clients."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[2]


def test_every_client_of_the_rabbitmq_server_runs_apart_from_the_test_that_restarts_it() -> None:
    """test_cluster stops the host's RabbitMQ mid-run; a file talking to it from the other xdist
    process would see its connections reset and fail for a reason not its own."""
    tests = ROOT / "tests"
    clients = {
        str(path.relative_to(ROOT))
        for folder in ("integration", "e2e")
        for path in (tests / folder).rglob("test_*.py")
        if any(mark in path.read_text() for mark in ("celery-rabbitmq", "RABBITMQ_URL", "engine: EngineUnderTest"))
    }  # the last: the `engine` fixture runs each test on every engine, RabbitMQ's included
    assert {"tests/integration/test_cluster.py", "tests/integration/test_conformance.py"} <= clients
    assert {path: SHARED.get(path) for path in clients} == dict.fromkeys(clients, "rabbitmq")
