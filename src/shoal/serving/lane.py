"""A lane: the replicas answering one role of a pipeline (production, canary or shadow).

A lane serves one version at a time. When its target version changes (an edited project, a
promotion, a rollback, a new replica count) the new version's replicas start beside the old
ones, which answer meanwhile; once every new replica is ready, the new set takes requests and
the old drains (answers all it holds) and stops. A version that fails to start never takes a
request: the old one keeps serving, and the lane says why.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from shoal.project import Project
from shoal.serving.pool import ReplicaPool

log = logging.getLogger(__name__)
MakePool = Callable[[Project, int | None], ReplicaPool]  #: a version's pool, with so many replicas (None: its own)
DRAIN_POLL_S = 0.05


class Lane:
    """The active version of one role of a pipeline, and the one warming to replace it."""

    def __init__(
        self,
        name: str,
        role: str,
        make: Callable[[Project, int | None], ReplicaPool],
        rolling: Callable[[Project], bool],
    ) -> None:
        self.name, self.role = name, role
        self._make = make
        self._rolling = rolling  #: whether a project's versions replace each other replica by replica
        self._roll_to = 0  #: the replicas a rolling change ends with
        self.active: ReplicaPool | None = None
        self.starting: ReplicaPool | None = None
        self.problem: str | None = None
        self.replicas: int | None = None  #: set at runtime, over shoal.toml

    def serve(self, project: Project) -> ReplicaPool | None:
        """The pool answering now for ``project``'s version as the target; None while the first
        one warms in a lane that is not production (its traffic goes to production meanwhile)."""
        active = self.active
        if active is None or (active.failure is not None and active.version != project.fingerprint):
            if active is not None:
                retire(active)
            self.active = self._make(project, self.replicas)
            return self.active if self.role == "production" or self.active.ready_replicas else None
        starting = self.starting
        if starting is not None and starting.version != project.fingerprint:
            retire(starting)  # a newer target came before it was ready
            starting = self.starting = None
        if starting is None and active.version != project.fingerprint:
            if self._rolling(project):  # memory for one more replica, not for a second set
                self._roll_to = self.replicas or active.size
                starting = self.starting = self._make(project, 1)
            else:
                starting = self.starting = self._make(project, self.replicas)
        if self.role != "production" and not active.ready_replicas and active.failure is None:
            return None
        if starting is None:
            return active
        if starting.failure is not None:
            self.problem = (
                f"version {starting.version} failed to start, so {active.version} serves on: {starting.failure}"
            )
            return active
        if self._roll_to and starting.ready_replicas >= starting.size and starting.size < self._roll_to:
            self._roll_step(active, starting)
        if starting.ready_replicas < max(starting.size, self._roll_to):
            if self._roll_to and starting.ready_replicas:  # both versions answer, by their ready replicas
                share = starting.ready_replicas / (starting.ready_replicas + max(active.ready_replicas, 1))
                return starting if random.random() < share else active
            return active  # the new set warms beside the old, which answers meanwhile
        self.active, self.starting, self.problem, self._roll_to = starting, None, None, 0
        log.info("shoal: %s %s now version %s, %d replicas", self.name, self.role, starting.version, starting.size)
        retire(active)
        return starting

    def _roll_step(self, active: ReplicaPool, starting: ReplicaPool) -> None:
        """One step of a rolling change: an old replica is told to go, and only once its process
        has exited does the next new one start, so memory never holds more than one extra."""
        if active.size + starting.size > self._roll_to:
            active.resize(max(1, active.size - 1))  # it finishes its batch, then exits
        elif active.alive_count + starting.size <= self._roll_to:
            starting.resize(starting.size + 1)

    def resize(self, project: Project, replicas: int) -> None:
        """Serve with this many replicas: a fresh set warms, then takes over (see `serve`)."""
        self.replicas = replicas
        if self.starting is not None:
            retire(self.starting)
            self.starting = None
        if self.active is None:
            self.active = self._make(project, replicas)
        elif self.active.size != replicas or self.active.version != project.fingerprint:
            self.starting = self._make(project, replicas)

    def pools(self) -> list[ReplicaPool]:
        return [p for p in (self.active, self.starting) if p is not None]

    def close(self) -> None:
        """Stop taking requests and let what is held be answered (on threads)."""
        for pool in self.pools():
            retire(pool)
        self.active = self.starting = None


def retire(pool: ReplicaPool) -> None:
    """Let ``pool`` answer what it holds, then stop it (on a thread: callers go on)."""
    pool.retiring = True

    def drain() -> None:
        while not pool.drained():
            time.sleep(DRAIN_POLL_S)
        pool.close()

    threading.Thread(target=drain, name=f"shoal-drain-{pool.version}", daemon=True).start()
