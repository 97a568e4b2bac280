"""Online serving: the pipelines a server runs as jobs, answering predict requests too.

Each pipeline served online gets a ReplicaPool of its own (warm processes, adaptive batching),
started on its first request or at server start when ``[serve] replicas`` is set. When a
project's code changes, the new version starts beside the old one and takes requests only once
a replica of it is ready; the old one then drains (every request it holds is answered) and
stops. A version that fails to load never takes a request: the old one keeps serving, and the
failure is shown in the pipeline's serving status.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.errors import ConfigError, ProjectError, ServingUnavailableError, UnknownPipelineError
from shoal.project import Project
from shoal.serving.batcher import BatchPolicy
from shoal.serving.metrics import ServingMetrics
from shoal.serving.pool import ReplicaPool, RetiredError
from shoal.wire import JobSpec, WireItem

if TYPE_CHECKING:
    from shoal.web.catalog import Catalog

log = logging.getLogger(__name__)
DRAIN_POLL_S = 0.05
MAX_REPLICAS = 16


@dataclass(frozen=True)
class ServeConfig:
    """A pipeline's ``[serve]`` table in shoal.toml."""

    replicas: int = 1
    max_batch_size: int = 32
    max_latency_ms: float = 10.0
    max_queue: int = 1024
    timeout_ms: float = 30_000.0  #: a request's deadline unless it asks for less
    cost_field: str | None = None  #: batch by the total length of this input field (meta), not by count
    max_batch_cost: float | None = None
    adaptive: bool = True  #: false: a fixed window (hold until max_batch_size or max_latency_ms), to compare

    @classmethod
    def of(cls, project: Project) -> ServeConfig:
        table = dict(project.config.get("serve", {}))
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"{project.root}/shoal.toml [serve]: unknown setting(s) {', '.join(unknown)}")
        if "max_batch_size" not in table:  # the pipeline's own batch size is what its model is built for
            table["max_batch_size"] = max(project.pipeline.group_size, 1)
        config = cls(**table)
        if config.replicas < 0 or config.max_batch_size < 1 or config.max_queue < 1 or config.timeout_ms <= 0:
            raise ConfigError(f"{project.root}/shoal.toml [serve]: replicas >= 0, max_batch_size, max_queue >= 1")
        return config

    def policy(self) -> BatchPolicy:
        field = self.cost_field
        cost = None if field is None else (lambda wire: float(len(str((wire.get("meta") or {}).get(field, "")))))
        return BatchPolicy(
            self.max_batch_size, self.max_latency_ms, self.max_queue, self.max_batch_cost, cost, self.adaptive
        )


class Serving:
    """The server's online pipelines: one active ReplicaPool each, and versions starting or draining."""

    def __init__(
        self,
        catalog: Catalog,
        data_root: Path,
        *,
        read_roots: list[str] | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.data_root = data_root
        self.read_roots = read_roots
        self.metrics = metrics
        self._active: dict[str, ReplicaPool] = {}
        self._starting: dict[str, ReplicaPool] = {}
        self._replicas: dict[str, int] = {}  #: set at runtime, over shoal.toml
        self._problems: dict[str, str] = {}  #: a newer version that could not take over, and why
        self._lock = threading.Lock()

    def start_configured(self) -> None:
        """Warm the pipelines whose shoal.toml asks for replicas, before any request."""
        for project in self.catalog:
            if "replicas" in project.config.get("serve", {}) and ServeConfig.of(project).replicas > 0:
                self.pool(project.pipeline.name)

    def predict(
        self, name: str, inputs: list[WireItem], timeout_s: float | None
    ) -> tuple[ReplicaPool, Future[Any], float]:
        """Queue the inputs with the pipeline's active version; the future answers each, in order,
        within the deadline returned (the request's, capped by ``[serve] timeout_ms``)."""
        for _ in range(3):
            pool = self.pool(name)
            limit = ServeConfig.of(pool.project).timeout_ms / 1000
            deadline = min(timeout_s, limit) if timeout_s else limit
            try:
                return pool, pool.submit(inputs, deadline), deadline
            except RetiredError:
                continue  # a newer version took over between the two calls: it answers
        raise ServingUnavailableError(f"{name}: versions keep changing; try again")

    def pool(self, name: str) -> ReplicaPool:
        """The version that answers ``name`` now, started if new; a changed project starts beside it."""
        try:
            project = self.catalog.get(name)
        except ProjectError as exc:
            with self._lock:
                active = self._active.get(name)
                if active is None:
                    raise
                self._problems[name] = f"the edited code does not load, so version {active.version} serves on: {exc}"
                return active
        with self._lock:
            active = self._active.get(name)
            if active is None or (active.failure is not None and active.version != project.fingerprint):
                if active is not None:
                    self._retire(active)
                active = self._active[name] = self._new_pool(project)
                return active
            starting = self._starting.get(name)
            if starting is not None and starting.version != project.fingerprint:
                self._retire(starting)  # a newer edit came before it was ready
                starting = None
            if starting is None and active.version != project.fingerprint:
                starting = self._starting[name] = self._new_pool(project)
            if starting is None:
                return active
            if starting.failure is not None:
                self._problems[name] = f"version {starting.version} failed to start: {starting.failure}"
                return active
            if starting.ready_replicas < starting.engine.workers:
                return active  # the new set warms beside the old, which answers meanwhile
            del self._starting[name]
            self._active[name] = starting
            self._problems.pop(name, None)
            log.info("shoal: %s now served by version %s, %d replicas", name, starting.version, starting.engine.workers)
            self._retire(active)
            return starting

    def set_replicas(self, name: str, replicas: int) -> None:
        """Serve ``name`` with this many replicas: a fresh set warms beside the current one and
        takes over once every replica is ready (at the next request); returns at once."""
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ConfigError(f"replicas must be 1 to {MAX_REPLICAS}")
        project = self.catalog.get(name)
        with self._lock:
            if self._replicas.get(name) == replicas and name in self._active:
                return
            self._replicas[name] = replicas
            active, starting = self._active.get(name), self._starting.pop(name, None)
            if starting is not None:
                self._retire(starting)
            if active is None:
                self._active[name] = self._new_pool(project)
            elif active.engine.workers != replicas or active.version != project.fingerprint:
                self._starting[name] = self._new_pool(project)

    def status(self, name: str) -> dict[str, Any]:
        if name not in self.catalog.names:
            raise UnknownPipelineError(name, self.catalog.names)
        with self._lock:
            active, starting = self._active.get(name), self._starting.get(name)
            return {
                "pipeline": name,
                "active": active.stats() if active is not None else None,
                "starting": starting.stats() if starting is not None else None,
                "problem": self._problems.get(name),
            }

    def close(self) -> None:
        with self._lock:
            pools = [*self._active.values(), *self._starting.values()]
            self._active.clear()
            self._starting.clear()
        for pool in pools:
            pool.close()

    def _new_pool(self, project: Project) -> ReplicaPool:
        from shoal.environments import project_environment
        from shoal.settings import default_home

        config = ServeConfig.of(project)
        replicas = self._replicas.get(project.pipeline.name, config.replicas) or 1
        out = self.data_root / "serving" / project.pipeline.name
        spec = JobSpec(f"serve-{project.pipeline.name}", project.fingerprint, str(out), read_roots=self.read_roots)
        env = project_environment(project.root, default_home() / "envs")
        return ReplicaPool(
            project,
            replicas,
            config.policy(),
            spec,
            log_dir=out / "logs",
            python_path=(str(env),) if env is not None else (),
            metrics=self.metrics,
        )

    def _retire(self, pool: ReplicaPool) -> None:
        """Let ``pool`` answer what it holds, then stop it (on a thread: callers go on)."""
        pool.retiring = True

        def drain() -> None:
            while not pool.drained():
                time.sleep(DRAIN_POLL_S)
            pool.close()

        threading.Thread(target=drain, name=f"shoal-drain-{pool.version}", daemon=True).start()
