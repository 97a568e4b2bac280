"""GET /api/v1/workers and the Workers page: without a broker an empty list and a note; with one,
the real `shoal worker` on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engines import EngineUnderTest
from tests.integration.test_workers_view import BLOCKING, wait_for

pytestmark = pytest.mark.integration


def test_workers_without_a_broker_answer_empty_with_a_note(serve: Callable[..., Any]) -> None:
    with serve().client() as client:
        answer = client.get("/api/v1/workers")
        assert answer.status_code == 200
        assert answer.json()["workers"] == []
        assert "broker" in answer.json()["note"]
        assert client.get("/api/v1/workers/shoal-1@nowhere/log").status_code == 404
        page = client.get("/workers")
        assert page.status_code == 200
        assert 'href="/workers"' in page.text
        assert "/static/workers.js" in page.text


def test_workers_lists_the_broker_s_worker_and_its_log(
    serve: Callable[..., Any], make_project: Callable[..., Path], home: Path
) -> None:
    from tests.engines import engine_for

    cluster: EngineUnderTest = engine_for("celery-redis", home)
    try:
        (worker,) = cluster.start_workers(make_project(BLOCKING), 1)
        with serve(engine="celery", broker_url=cluster.broker).client() as client:

            def mine() -> dict[str, Any] | None:
                found = client.get("/api/v1/workers").json()["workers"]
                return next((w for w in found if w["pid"] == worker.pid), None)

            record = wait_for(mine, "the worker in GET /api/v1/workers")
            assert record["state"] == "up"
            assert record["queue"].startswith(cluster.queue + ".")
            log = client.get(f"/api/v1/workers/{record['name']}/log", params={"lines": 20})
            assert log.status_code == 200
            assert log.json()["files"][0]["lines"]  # Celery's own start-up lines
    finally:
        cluster.stop_workers()
