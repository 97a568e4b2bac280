"""The code versions a worker started without a project serves, fetched the first time a job names them.

A job names its code by fingerprint. The first chunk of a new one fetches its bundle from the
bundle store, checks the signature, unpacks it into the disk cache and installs its requirements
into a cached environment; then a pool of processes (a Supervisor) loads it and stays warm for the
next chunks. At most ``warm`` versions keep processes, and at most ``keep`` bundles and
environments stay on disk; the least recently used go first, never one a chunk is running on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from shoal.bundles import MANIFEST, REQUIREMENTS, Manifest, check_python, open_bundle
from shoal.engines.celery.supervisor import Code, Supervisor
from shoal.environments import hold, locked, requirements_env, unused
from shoal.errors import BundleError, WorkerStartError
from shoal.wire import JobSpec, Report, WireItem

if TYPE_CHECKING:
    from shoal.bundle_store import BundleStore
    from shoal.metrics.worker import WorkerMetrics

log = logging.getLogger(__name__)


class Versions:
    """Warm pools of processes per code version, behind the Supervisor's interface."""

    def __init__(
        self,
        store: BundleStore,
        key: bytes,
        cache: Path,
        processes: int,
        *,
        warm: int = 2,
        keep: int = 8,
        wheels: str | None = None,
        log_dir: Path | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store, self.key, self.processes = store, key, processes
        self.bundles, self.envs = cache / "bundles", cache / "envs"
        self.warm, self.keep = max(1, warm), max(1, keep)
        self.wheels = wheels  #: requirements come from this folder of wheels alone, if given
        self.log_dir, self.metrics = log_dir, metrics
        self._pools: OrderedDict[str, Supervisor] = OrderedDict()  #: least recently used first
        self._busy: dict[str, int] = {}
        self._holds: dict[str, list[BinaryIO]] = {}  #: per warm version: its files kept from trimming
        self._lock = threading.Lock()
        self._retired = (0, 0)  #: items done and failed by pools since closed

    # --- the Supervisor's interface, for the Celery task and the worker's status ---------------
    def start(self) -> None:
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.envs.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        with self._lock:
            pools = [self._retire(fingerprint) for fingerprint in list(self._pools)]
        for pool in pools:
            pool.close()

    def run(self, job: JobSpec, items: list[WireItem]) -> tuple[str, Report]:
        pool = self._acquire(job.fingerprint)
        try:
            return pool.run(job, items)
        except WorkerStartError as exc:  # its processes cannot import the code or run setup(): no retry helps
            self._discard(job.fingerprint, pool)
            raise BundleError(
                f"code bundle {job.fingerprint} ({pool.code.pipeline}) does not start here: {exc}"
            ) from exc
        finally:
            with self._lock:
                self._busy[job.fingerprint] -= 1

    def _discard(self, fingerprint: str, pool: Supervisor) -> None:
        """Close a pool that failed, if it is still the one serving its version."""
        with self._lock:
            if self._pools.get(fingerprint) is pool:
                self._retire(fingerprint)
        pool.close()

    @property
    def healthy(self) -> bool:
        with self._lock:
            return all(pool.healthy for pool in self._pools.values())

    @property
    def loaded(self) -> list[str]:
        """The code versions with warm processes, most recently used first."""
        with self._lock:
            return list(reversed(self._pools))

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            pools = list(self._pools.values())
        return [process for pool in pools for process in pool.running()]

    @property
    def done(self) -> int:
        with self._lock:
            return self._retired[0] + sum(pool.done for pool in self._pools.values())

    @property
    def failed(self) -> int:
        with self._lock:
            return self._retired[1] + sum(pool.failed for pool in self._pools.values())

    # --- versions ----------------------------------------------------------------------------
    def _acquire(self, fingerprint: str) -> Supervisor:
        with self._lock:
            pool = self._pools.get(fingerprint)
            if pool is not None and pool.healthy:
                self._pools.move_to_end(fingerprint)
                self._busy[fingerprint] += 1
                _touch(self.bundles / fingerprint, pool.code)
                return pool
        # Outside the lock: other versions' chunks go on meanwhile. A BundleError is final (the job
        # hears it); anything else (the store unreachable, a full disk) fails this chunk alone,
        # which the coordinator sends again.
        code, holds = self.prepare(fingerprint)
        idle = []
        with self._lock:
            pool = self._pools.get(fingerprint)
            if pool is None or not pool.healthy:
                if pool is not None:
                    idle.append(self._retire(fingerprint))
                pool = Supervisor(code, self.processes, log_dir=self.log_dir, metrics=self.metrics)
                pool.start()
                self._pools[fingerprint], self._holds[fingerprint], holds = pool, holds, []
                self._busy.setdefault(fingerprint, 0)
            self._pools.move_to_end(fingerprint)
            self._busy[fingerprint] += 1
            idle += self._evict()
        for handle in holds:  # another thread readied the same version meanwhile: its pool holds it
            handle.close()
        for old in idle:
            old.close()
        return pool

    def _evict(self) -> list[Supervisor]:
        """Pools over the warm limit, least recently used first, among those no chunk runs on."""
        idle = [fp for fp in self._pools if not self._busy.get(fp)]
        return [self._retire(fp) for fp in idle[: max(0, len(self._pools) - self.warm)]]

    def _retire(self, fingerprint: str) -> Supervisor:
        pool = self._pools.pop(fingerprint)
        for handle in self._holds.pop(fingerprint, []):  # its files may be trimmed from now on
            handle.close()
        self._retired = (self._retired[0] + pool.done, self._retired[1] + pool.failed)
        log.info("code version %s is no longer kept warm", fingerprint)
        return pool

    def prepare(self, fingerprint: str) -> tuple[Code, list[BinaryIO]]:
        """The version's files on disk, fetched and checked if new, and its requirements installed;
        with holds on both (see environments.hold) that keep them from being trimmed."""
        folder = self.bundles / fingerprint
        holds = []
        try:
            with locked(self.bundles / f"{fingerprint}.lock"):  # workers sharing the cache fetch once
                if not (folder / MANIFEST).is_file():
                    shutil.rmtree(folder, ignore_errors=True)
                    self._fetch(fingerprint, folder)
                manifest = Manifest(**json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
                check_python(manifest)  # a cache folder may be shared by workers on other Pythons
                os.utime(folder)
                holds.append(hold(folder))
            root = folder / "files"
            label = f"code bundle {fingerprint} ({manifest.pipeline})"
            path: tuple[str, ...] = ()
            if manifest.requirements:
                env, held = requirements_env(root / REQUIREMENTS, self.envs, label=label, wheels=self.wheels)
                path = (str(env),)
                holds.append(held)
        except BaseException:
            for handle in holds:
                handle.close()
            raise
        self._trim()
        spec = root / manifest.entry if manifest.entry else root
        return Code(spec, fingerprint, manifest.pipeline, manifest.stages, path), holds

    def _fetch(self, fingerprint: str, folder: Path) -> None:
        started = time.monotonic()
        blob = self.store.get(fingerprint)
        if blob is None:
            raise BundleError(
                f"code bundle {fingerprint} is not in the bundle store: the coordinator publishes it when its job "
                "starts. Do this worker and the coordinator name the same --bundles (SHOAL_BUNDLES_URL)?"
            )
        manifest = open_bundle(blob, self.key, fingerprint, folder)
        seconds = time.monotonic() - started
        log.info(
            "fetched code bundle %s (%s, %d files, %.1f KiB) from %s in %.3f s",
            fingerprint, manifest.pipeline, manifest.files, len(blob) / 1024, manifest.made_on, seconds,
        )  # fmt: skip

    def _trim(self) -> None:
        """Keep the ``keep`` most recently used bundles and environments on disk, and every one a
        warm pool uses, here or in another worker sharing the cache; trimming never fails a chunk."""
        try:
            for parent in (self.bundles, self.envs):
                for folder in _oldest_first(parent)[: -self.keep]:
                    with locked(parent / f"{folder.name}.lock"):
                        if unused(folder):
                            shutil.rmtree(folder, ignore_errors=True)
        except OSError as exc:
            log.warning(
                "trimming the worker cache %s failed (%s); it is tried again with the next version",
                self.bundles.parent,
                exc,
            )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile by another worker sharing the cache
        return float("inf")


def _oldest_first(parent: Path) -> list[Path]:
    folders = [p for p in parent.iterdir() if p.is_dir() and "." not in p.name]
    return sorted(folders, key=_mtime)


def _touch(bundle: Path, code: Code) -> None:
    """Mark a version's bundle and environment as used now, for whoever trims the cache."""
    for folder in (bundle, *map(Path, code.python_path)):
        with contextlib.suppress(FileNotFoundError):
            os.utime(folder)
