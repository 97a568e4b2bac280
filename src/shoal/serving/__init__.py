"""Online serving: the pipelines a server runs as jobs, answering predict requests too.

Each pipeline served online has lanes (see lane.py): production always, and a canary taking a
share of requests (sticky by a request key when one is given) or a shadow seeing a copy of them,
when the model registry names one. Production serves the registry's ``production`` version when
there is one, else the project folder's code as it is now (edits are picked up). The registry is
read again every second, so `shoal models promote`, a rollback or a `git push` deploy reaches a
running server within seconds. A guard thread judges canaries and shadows (see guard.py): a
breach rolls the candidate back, recorded in the registry with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal import registry
from shoal.errors import ConfigError, ProjectError, ServingUnavailableError, UnknownPipelineError
from shoal.project import Project
from shoal.serving.config import MAX_REPLICAS, ServeConfig
from shoal.serving.guard import Agreement, Guardrails, verdict
from shoal.serving.lane import Lane
from shoal.serving.log import PredictionLog
from shoal.serving.metrics import ServingMetrics
from shoal.serving.pool import ReplicaPool, RetiredError
from shoal.wire import JobSpec, WireItem

if TYPE_CHECKING:
    from shoal.store import Ledger
    from shoal.web.catalog import Catalog

__all__ = ["MAX_REPLICAS", "ServeConfig", "Serving"]
log = logging.getLogger(__name__)
ROUTES_TTL_S = 1.0  #: how stale the registry's aliases may be
GUARD_EVERY_S = 0.25


@dataclass
class _Routes:
    """What the registry says of a pipeline, as last read."""

    production: registry.ModelVersion | None = None
    canary: tuple[registry.ModelVersion, registry.Alias] | None = None
    shadow: tuple[registry.ModelVersion, registry.Alias] | None = None
    read_at: float = 0.0


@dataclass
class _Pipeline:
    production: Lane
    canary: Lane
    shadow: Lane
    routes: _Routes = field(default_factory=_Routes)
    agreement: Agreement = field(default_factory=Agreement)
    projects: dict[str, Project] = field(default_factory=dict)  #: registry versions, loaded once


class Serving:
    """The server's online pipelines, their lanes, and the registry that routes them."""

    def __init__(
        self,
        catalog: Catalog,
        data_root: Path,
        *,
        ledger: Ledger | None = None,
        read_roots: list[str] | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.data_root = data_root
        self.ledger = ledger
        self.read_roots = read_roots
        self.metrics = metrics
        self._pipelines: dict[str, _Pipeline] = {}
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self.requests = PredictionLog(ledger, data_root) if ledger is not None else None
        self._guard = threading.Thread(target=self._watch, name="shoal-serve-guard", daemon=True)
        self._guard.start()

    def start_configured(self) -> None:
        """Warm the pipelines whose shoal.toml asks for replicas, before any request."""
        for project in self.catalog:
            if "replicas" in project.config.get("serve", {}) and ServeConfig.of(project).replicas > 0:
                self.pool(project.pipeline.name)

    # --- requests ----------------------------------------------------------------------------
    def predict(
        self, name: str, inputs: list[WireItem], timeout_s: float | None, key: str | None = None
    ) -> tuple[ReplicaPool, Future[Any], float]:
        """Queue the inputs with the version that answers this request (production, or the
        canary for its share); the future answers each input, in order, within the deadline
        returned (the request's, capped by ``[serve] timeout_ms``). A shadow gets a copy."""
        for _ in range(3):
            pool, shadow = self._route(name, key)
            limit = ServeConfig.of(pool.project).timeout_ms / 1000
            deadline = min(timeout_s, limit) if timeout_s else limit
            try:
                future = pool.submit(inputs, deadline)
            except RetiredError:
                continue  # a newer version took over between the two calls: it answers
            if shadow is not None:
                self._copy_to(shadow, name, inputs, deadline, future)
            return pool, future, deadline
        raise ServingUnavailableError(f"{name}: versions keep changing; try again")

    def pool(self, name: str) -> ReplicaPool:
        """The production version answering ``name`` now, started if new."""
        return self._route(name, None, trial=False)[0]

    def _route(self, name: str, key: str | None, *, trial: bool = True) -> tuple[ReplicaPool, ReplicaPool | None]:
        with self._lock:
            state = self._state(name)
            routes = self._routes(name, state)
            production = self._production(name, state, routes)
            if not trial:
                return production, None
            chosen, shadow = production, None
            if routes.canary is not None:
                record, alias = routes.canary
                canary = state.canary.serve(self._version_project(state, record))
                if canary is not None and canary.failure is None and _takes(key, alias.weight or 0.0):
                    chosen = canary
            if routes.shadow is not None:
                shadow = state.shadow.serve(self._version_project(state, routes.shadow[0]))
                shadow = shadow if shadow is not None and shadow.failure is None else None
            return chosen, shadow

    def _production(self, name: str, state: _Pipeline, routes: _Routes) -> ReplicaPool:
        lane = state.production
        if routes.production is not None:
            try:
                project = self._version_project(state, routes.production)
            except (ProjectError, ConfigError) as exc:
                if lane.active is None:
                    raise
                lane.problem = f"production version {routes.production.version} does not load: {exc}"
                return lane.active
        else:
            try:
                project = self.catalog.get(name)
            except ProjectError as exc:
                if lane.active is None:
                    raise
                lane.problem = f"the edited code does not load, so version {lane.active.version} serves on: {exc}"
                return lane.active
        pool = lane.serve(project)
        assert pool is not None  # production always has a pool
        return pool

    def _copy_to(
        self, shadow: ReplicaPool, name: str, inputs: list[WireItem], deadline: float, answer: Future[Any]
    ) -> None:
        """Send a copy to the shadow; when both have answered, count whether they agreed."""
        try:
            copy = shadow.submit(inputs, deadline)
        except ServingUnavailableError:
            return  # a shadow is never worth a request's failure
        agreement = self._state(name).agreement

        def compare(_: Future[Any]) -> None:
            both = answer.done() and copy.done() and not answer.cancelled() and not copy.cancelled()
            if both and answer.exception() is None and copy.exception() is None:
                agreement.add(answer.result(), copy.result())

        answer.add_done_callback(compare)
        copy.add_done_callback(compare)

    # --- registry ----------------------------------------------------------------------------
    def _routes(self, name: str, state: _Pipeline) -> _Routes:
        now = time.monotonic()
        if self.ledger is None or now - state.routes.read_at < ROUTES_TTL_S:
            return state.routes
        aliases = registry.aliases(self.ledger, name)
        routes = _Routes(read_at=now)
        for role in (registry.PRODUCTION, registry.CANARY, registry.SHADOW):
            alias = aliases.get(role)
            if alias is None:
                continue
            record = registry.get_version(self.ledger, name, alias.version)
            if role == registry.PRODUCTION:
                routes.production = record
            elif role == registry.CANARY:
                routes.canary = (record, alias)
            else:
                routes.shadow = (record, alias)
        if routes.canary is None and state.routes.canary is not None:
            state.canary.close()
        if routes.shadow is None and state.routes.shadow is not None:
            state.shadow.close()
        if routes.shadow is not None and (
            state.routes.shadow is None or state.routes.shadow[0].version != routes.shadow[0].version
        ):
            state.agreement = Agreement()
        state.routes = routes
        return routes

    def _version_project(self, state: _Pipeline, record: registry.ModelVersion) -> Project:
        project = state.projects.get(record.version)
        if project is None:
            project = state.projects[record.version] = registry.load_version(record)
        return project

    def _watch(self) -> None:
        """Judge canaries and shadows against their guardrails, a few times a second."""
        while not self._closing.wait(GUARD_EVERY_S):
            with self._lock:
                judged = [
                    (name, role, lane, alias, state.agreement)
                    for name, state in self._pipelines.items()
                    for role, lane, found in (
                        (registry.CANARY, state.canary, state.routes.canary),
                        (registry.SHADOW, state.shadow, state.routes.shadow),
                    )
                    if found is not None
                    for alias in [found[1]]
                ]
            self._gauge_shares()
            for name, role, lane, alias, agreement in judged:
                pool = lane.active
                if pool is None or pool.version != alias.version:
                    continue
                found = verdict(role, pool, Guardrails.of(alias.options), agreement if role == "shadow" else None)
                if found is not None:
                    self._act(name, role, alias, *found)

    def _gauge_shares(self) -> None:
        if self.metrics is None:
            return
        with self._lock:
            names = list(self._pipelines)
        for name in names:
            for version, figures in self.traffic(name).items():
                self.metrics.share.labels(name, version, figures["role"]).set(figures["share"] or 0.0)

    def _act(self, name: str, role: str, alias: registry.Alias, action: str, why: str) -> None:
        if self.ledger is None:
            return
        try:
            # Only the judge that ends the trial acts on it (a promotion too), once.
            if action == "rollback":
                kind = f"{role}_rolled_back"
                decided = registry.drop_alias(
                    self.ledger, name, role, by="guardrails", kind=kind, detail=why, version=alias.version
                )
            else:
                decided = registry.promote_trial(self.ledger, name, role, alias.version, by="guardrails", detail=why)
        except Exception:
            log.exception("shoal: could not record the %s of %s %s", action, name, role)
            return
        with self._lock:
            state = self._pipelines.get(name)
            if state is not None:
                # Read the registry now, not at the next request: the lane closes at once and
                # the watcher does not judge a trial that has ended.
                state.routes.read_at = 0.0
                self._routes(name, state)
        if not decided:
            return
        if action == "rollback":
            log.warning("shoal: %s %s %s rolled back: %s", name, role, alias.version, why)
        else:
            log.info("shoal: %s %s %s promoted: %s", name, role, alias.version, why)
        if self.metrics is not None:
            self.metrics.decisions.labels(name, alias.version, role, action).inc()

    # --- status and control ------------------------------------------------------------------
    def set_replicas(self, name: str, replicas: int) -> None:
        """Serve ``name`` with this many replicas: a fresh set warms beside the current one and
        takes over once every replica is ready (at the next request); returns at once."""
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ConfigError(f"replicas must be 1 to {MAX_REPLICAS}")
        with self._lock:
            state = self._state(name)
            if state.production.replicas == replicas and state.production.active is not None:
                return
            routes = self._routes(name, state)
            project = (
                self._version_project(state, routes.production)
                if routes.production is not None
                else self.catalog.get(name)
            )
            state.production.resize(project, replicas)

    def status(self, name: str) -> dict[str, Any]:
        with self._lock:
            state = self._state(name)
            lanes: dict[str, Any] = {}
            for role, lane in (("production", state.production), ("canary", state.canary), ("shadow", state.shadow)):
                lanes[role] = {
                    "active": lane.active.stats() if lane.active is not None else None,
                    "starting": lane.starting.stats() if lane.starting is not None else None,
                    "problem": lane.problem,
                }
            routes = state.routes
            production = lanes["production"]
            return {
                "pipeline": name,
                "active": production["active"],
                "starting": production["starting"],
                "problem": production["problem"],
                "lanes": lanes,
                "canary_share": routes.canary[1].weight if routes.canary is not None else None,
                "shadow_disagreement": state.agreement.rate if routes.shadow is not None else None,
            }

    def traffic(self, name: str) -> dict[str, dict[str, Any]]:
        """Per version answering now: role, answered, error rate, p50/p99 and share of inputs."""
        with self._lock:
            state = self._pipelines.get(name)
            if state is None:
                return {}
            found = {
                pool.version: {"role": role, **pool.traffic.summary()}
                for role, lane in (("production", state.production), ("canary", state.canary), ("shadow", state.shadow))
                for pool in lane.pools()
            }
        served = sum(v["answered"] for v in found.values() if v["role"] != "shadow") or 1
        for value in found.values():
            value["share"] = None if value["role"] == "shadow" else value["answered"] / served
        return found

    def record(
        self,
        pool: ReplicaPool,
        inputs: list[WireItem],
        outputs: list[dict[str, Any]],
        seconds: float,
        folder: Path | None,
    ) -> None:
        """Keep the answered inputs in the request log, where the version's [serve] asks for it."""
        if self.requests is not None and ServeConfig.of(pool.project).log_requests:
            self.requests.record(pool.project.pipeline.name, inputs, outputs, seconds, folder)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            pools = [
                p for s in self._pipelines.values() for lane in (s.production, s.canary, s.shadow) for p in lane.pools()
            ]
            self._pipelines.clear()
        for pool in pools:
            pool.close()
        if self.requests is not None:
            self.requests.close()

    def _state(self, name: str) -> _Pipeline:
        if name not in self.catalog.names:
            raise UnknownPipelineError(name, self.catalog.names)
        state = self._pipelines.get(name)
        if state is None:
            rolling = _rolling
            state = self._pipelines[name] = _Pipeline(
                Lane(name, "production", self._new_pool, rolling),
                Lane(name, "canary", self._new_pool, rolling),
                Lane(name, "shadow", self._new_pool, rolling),
            )
        return state

    def _new_pool(self, project: Project, replicas: int | None) -> ReplicaPool:
        from shoal.environments import project_environment

        config = ServeConfig.of(project)
        out = self.data_root / "serving" / project.pipeline.name
        spec = JobSpec(f"serve-{project.pipeline.name}", project.fingerprint, str(out), read_roots=self.read_roots)
        env = project_environment(project.root)
        return ReplicaPool(
            project,
            replicas or config.replicas or 1,
            config.policy(),
            spec,
            log_dir=out / "logs",
            python_path=(str(env),) if env is not None else (),
            metrics=self.metrics,
        )


def _rolling(project: Project) -> bool:
    return ServeConfig.of(project).swap == "rolling"


def _takes(key: str | None, share: float) -> bool:
    """Whether a request goes to the canary: by its key's hash when given (the same key always
    goes the same way), else at random."""
    if key is None:
        return random.random() < share
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big")
    return bucket / 2**64 < share
