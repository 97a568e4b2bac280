"""How the coordinator reads chunk states: pushed by Redis as they are stored, read in one round
trip when it asks for all of them, and PENDING for a task nobody has run; from RabbitMQ, as
replies each read once, so the last state of every task read stands until a newer one comes."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from shoal.engines.celery.app import make_app
from shoal.engines.celery.results import ResultWatch
from tests.engines import RABBITMQ_URL, REDIS_URL, require_service

pytestmark = [
    pytest.mark.integration,
    # Celery's Redis backend stores results with redis-py's deprecated setex; workers do it too.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]


def test_redis_pushes_every_state_of_a_watched_task_and_reads_all_at_once() -> None:
    require_service(6379)
    app = make_app(REDIS_URL)
    watch = ResultWatch(app)
    mine, other, never = (f"test-{uuid.uuid4().hex}" for _ in range(3))
    try:
        assert watch.pushed
        watch.watch(mine)
        app.backend.store_result(mine, {"beat": 1}, "PROGRESS")
        app.backend.store_result(other, {"n": 2}, "SUCCESS")  # not watched: never reported as a change
        app.backend.store_result(mine, {"n": 1}, "SUCCESS")
        changes: list[tuple[str, dict]] = []
        for _ in range(20):
            changes += watch.wait(0.5)
            if len(changes) >= 2:
                break
        assert [(task, meta["status"]) for task, meta in changes] == [(mine, "PROGRESS"), (mine, "SUCCESS")]
        assert changes[-1][1]["result"] == {"n": 1}

        states = watch.states([mine, never, other])
        assert [s["status"] for s in states] == ["SUCCESS", "PENDING", "SUCCESS"]
        assert states[2]["result"] == {"n": 2}

        watch.unwatch(mine)
        app.backend.store_result(mine, {"n": 3}, "SUCCESS")
        assert watch.wait(0.3) == []  # no longer watched: nothing pushed
    finally:
        for task in (mine, other):
            app.backend.forget(task)
        watch.close()
        app.close()


def test_rabbitmq_replies_are_read_once_and_each_task_keeps_its_last_state() -> None:
    require_service(5672)
    app = make_app(RABBITMQ_URL)
    watch = ResultWatch(app)
    first, second, never = (f"test-{uuid.uuid4().hex}" for _ in range(3))

    def reply(task_id: str, state: str, meta: dict[str, int]) -> None:
        """What a worker's task sends: a reply to the queue of the coordinator that sent it."""
        request = SimpleNamespace(reply_to=app.backend.oid, correlation_id=task_id, ignore_result=False)
        app.backend.store_result(task_id, meta, state, request=request)

    try:
        assert not watch.pushed
        assert watch.states([never])[0]["status"] == "PENDING"  # declares the reply queue, as sending a task does
        reply(first, "STARTED", {"pid": 1})
        reply(second, "STARTED", {"pid": 2})
        reply(first, "PROGRESS", {"beat": 1})
        for _ in range(3):  # each reply is consumed by the first read: the later ones must not forget it
            states = watch.states([first, second, never])
            assert [s["status"] for s in states] == ["PROGRESS", "STARTED", "PENDING"]
        assert states[0]["result"] == {"beat": 1}

        reply(second, "SUCCESS", {"n": 2})
        assert [s["status"] for s in watch.states([second, first])] == ["SUCCESS", "PROGRESS"]
        watch.unwatch(second)
        watch.unwatch(first)
        assert [s["status"] for s in watch.states([first])] == ["PENDING"]  # forgotten once settled
    finally:
        watch.close()
        app.close()
