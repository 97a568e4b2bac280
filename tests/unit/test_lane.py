"""A rolling change never holds more than one replica beyond the target, leaving ones included."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from shoal.serving.lane import Lane


class FakePool:
    """Replicas that take one tick to get ready, and one tick to exit once told to go."""

    def __init__(self, version: str, size: int) -> None:
        self.version, self.size = version, size
        self.ready_replicas, self.leaving, self.failure = 0, 0, None
        self.closed = False

    @property
    def alive_count(self) -> int:
        return self.size + self.leaving

    def resize(self, replicas: int) -> None:
        self.leaving += max(0, self.size - replicas)
        self.ready_replicas = min(self.ready_replicas, replicas)
        self.size = replicas

    def tick(self) -> None:
        self.leaving = 0
        self.ready_replicas = self.size

    def drained(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def test_a_rolling_change_starts_each_new_replica_only_after_an_old_one_exited() -> None:
    made: list[FakePool] = []

    def make(project: Any, replicas: int | None) -> FakePool:
        made.append(FakePool(project.fingerprint, replicas or 3))
        return made[-1]

    lane = Lane("echo", "production", make, lambda project: True)  # type: ignore[arg-type]
    one, two = SimpleNamespace(fingerprint="one"), SimpleNamespace(fingerprint="two")
    lane.serve(one)  # type: ignore[arg-type]
    made[0].tick()
    held = []
    for _ in range(30):
        lane.serve(two)  # type: ignore[arg-type]
        held.append(sum(pool.alive_count for pool in made if not pool.closed))
        for pool in made:
            pool.tick()
        if lane.active is not None and lane.active.version == "two" and lane.starting is None:
            break
    assert lane.active is made[1]
    assert made[1].size == 3
    assert max(held) == 4  # three of the old version and the first new one, never five
