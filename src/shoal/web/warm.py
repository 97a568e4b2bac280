"""Workers kept warm between jobs, so a small job does not wait for processes to start.

Workers take chunks of any job of the code they loaded (each chunk carries its job), so an
engine that finished one job can serve the next job of the same pipeline at once. An engine is
lent to one job at a time; one that ended badly (a job stopped with items in flight, workers
that failed to start) is stopped instead of kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from shoal.engines import Chunk, Engine, Event, create_engine
from shoal.project import Project
from shoal.settings import RunSettings


class WarmEngines:
    """Idle engines by what they run (project, code, engine, workers), ready to be lent."""

    def __init__(self, log_root: Path, idle_s: float = 600.0) -> None:
        self.log_root = log_root
        self.idle_s = idle_s  #: seconds an idle engine is kept
        self._idle: dict[Hashable, tuple[Engine, float]] = {}
        self._lock = threading.Lock()

    def lease(self, settings: RunSettings, project: Project) -> Lease:
        """An engine for one job: a warm one if there is one, else a new one."""
        key = (str(project.root), project.fingerprint, settings.engine_name, settings.workers, settings.broker_url)
        with self._lock:
            idle = self._idle.pop(key, None)
        if idle is not None:
            return Lease(self, key, idle[0])
        engine = create_engine(settings, project, log_dir=self.log_root / project.pipeline.name)
        return Lease(self, key, engine)

    def give_back(self, key: Hashable, engine: Engine, *, kill: bool) -> None:
        if kill or self.idle_s <= 0:
            engine.stop(kill=kill)
            return
        with self._lock:
            extra = self._idle.pop(key, None)
            self._idle[key] = (engine, time.monotonic())
        if extra is not None:  # two jobs of the same pipeline ran at once: keep one engine
            extra[0].stop()

    def sweep(self) -> None:
        """Stop engines idle for longer than idle_s."""
        now = time.monotonic()
        with self._lock:
            old = [k for k, (_, since) in self._idle.items() if now - since >= self.idle_s]
            stale = [self._idle.pop(k)[0] for k in old]
        for engine in stale:
            engine.stop()

    def close(self) -> None:
        with self._lock:
            engines = [engine for engine, _ in self._idle.values()]
            self._idle.clear()
        for engine in engines:
            engine.stop()

    def __len__(self) -> int:
        return len(self._idle)


class Lease:
    """One job's use of an engine: the Engine protocol, with stop() handing the engine back."""

    def __init__(self, pool: WarmEngines, key: Hashable, engine: Engine) -> None:
        self.pool, self.key, self.engine = pool, key, engine
        self.returned = False

    @property
    def workers(self) -> int:
        return self.engine.workers

    @property
    def chunk_seconds(self) -> float:
        return self.engine.chunk_seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)  # anything else an engine offers (pids(), ...)

    def start(self) -> None:
        self.engine.start()

    def capacity(self) -> int:
        return self.engine.capacity()

    def submit(self, chunk: Chunk) -> None:
        self.engine.submit(chunk)

    def poll(self, timeout: float) -> list[Event]:
        return self.engine.poll(timeout)

    def stop(self, *, kill: bool = False) -> None:
        """The job is over: a clean finish keeps the workers warm, anything else stops them."""
        if not self.returned:
            self.returned = True
            self.pool.give_back(self.key, self.engine, kill=kill)

    def close(self) -> None:
        """Release an engine the job never got to use (it failed before its run began)."""
        self.stop(kill=True)
