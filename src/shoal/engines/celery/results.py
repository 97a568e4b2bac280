"""Reading chunk results from Celery's result store without polling it hard.

The coordinator watches every in-flight chunk. Asking the store for each chunk's state many times a
second costs CPU that, on a small machine, the workers need. With Redis, Celery publishes every
state it stores (started, each heartbeat, the result) on a channel named after the task, so the
coordinator subscribes and sleeps until one arrives; a full read of every state (one MGET) still
runs now and then, to notice what a subscription cannot: a worker gone silent. With RabbitMQ the
results arrive as replies to the coordinator and are read as they come; each reply is read once,
so the latest state of every watched task is kept here (Celery's own cache is off: it would keep
every task's whole report), or a running chunk would read as never started.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

PENDING: dict[str, Any] = {"status": "PENDING", "result": None}
POLL_EVERY = 0.02  #: seconds between reads of every state where nothing is pushed


class ResultWatch:
    """Task states by id: all at once (``states``), or as they change (``wait``)."""

    def __init__(self, app: Celery) -> None:
        self._backend = app.backend
        self._keyed = hasattr(self._backend, "mget")  # Redis: states are keys, changes are published
        self._channels: dict[str, str] = {}  #: channel -> task id
        self._latest: dict[str, dict[str, Any]] = {}  #: task id -> the last state replied (RabbitMQ)
        self._pubsub = self._backend.client.pubsub(ignore_subscribe_messages=True) if self._keyed else None

    @property
    def pushed(self) -> bool:
        """Whether changes arrive by themselves, so full reads can be rare."""
        return self._pubsub is not None

    def watch(self, task_id: str) -> None:
        """Subscribe before the task is sent, so not even its first state is missed."""
        if self._pubsub is not None:
            channel = self._backend.get_key_for_task(task_id).decode()
            self._channels[channel] = task_id
            self._pubsub.subscribe(channel)

    def unwatch(self, task_id: str) -> None:
        self._latest.pop(task_id, None)
        if self._pubsub is not None:
            channel = self._backend.get_key_for_task(task_id).decode()
            if self._channels.pop(channel, None) is not None:
                self._pubsub.unsubscribe(channel)

    def states(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """Every task's current state: one round trip where the store allows it."""
        if not self._keyed:
            return [self._replied(task_id) for task_id in task_ids]
        payloads = self._backend.mget([self._backend.get_key_for_task(task_id) for task_id in task_ids])
        return [self._backend.decode_result(payload) if payload else PENDING for payload in payloads]

    def _replied(self, task_id: str) -> dict[str, Any]:
        """A task's newest reply, or the last one read when none came since (not "pending")."""
        meta: dict[str, Any] = self._backend.get_task_meta(task_id)
        if meta["status"] == "PENDING":
            return self._latest.get(task_id, meta)
        self._latest[task_id] = meta
        return meta

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """States published within ``timeout`` seconds (at least one, unless the time runs out)."""
        if self._pubsub is None:
            time.sleep(min(POLL_EVERY, timeout))
            return []
        changes = []
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            channel = message["channel"].decode()
            task_id = self._channels.get(channel)
            if task_id is not None and message["type"] == "message":
                changes.append((task_id, self._backend.decode_result(message["data"])))
            message = self._pubsub.get_message(timeout=0.0)
        return changes

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
