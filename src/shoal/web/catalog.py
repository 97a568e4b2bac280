"""The pipelines a server offers: the projects given with --project, by name.

A project's code is checked when it is used, at most once every RECHECK_S seconds (a walk of a
large project folder is not free): when its files changed since it was loaded (their sizes and
times, then their hash), it is imported again, so an edited pipeline is served without
a restart and its jobs record the new fingerprint. Workers warm with the old code keep serving
only jobs of the old code. Modules that pipeline.py imports from its folder are read by the
workers afresh, not by the server.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from shoal.errors import ConfigError, ProjectError, UnknownPipelineError
from shoal.project import Project, Stamp, code_stamp, fingerprint, load_project, read_config

log = logging.getLogger("shoal.web")
RECHECK_S = 1.0  #: seconds between looks at a project's files


class Catalog:
    """Projects by pipeline name, reloaded when their code changes."""

    def __init__(self, projects: Sequence[Project] = (), recheck_s: float = RECHECK_S) -> None:
        self.recheck_s = recheck_s
        self._by_name: dict[str, Project] = {}
        self._stamps: dict[Path, Stamp] = {}
        self._looked: dict[Path, float] = {}  #: when each project's files were last looked at
        self._broken: dict[Path, str] = {}  #: why a project's current code does not load
        self._lock = threading.Lock()
        for project in projects:
            self._add(project)
            self._stamps[project.root] = code_stamp(project.root, read_config(project.root))
            self._looked[project.root] = time.monotonic()

    @classmethod
    def load(cls, folders: Sequence[Path], recheck_s: float = RECHECK_S) -> Catalog:
        return cls([load_project(folder) for folder in folders], recheck_s)

    def __iter__(self) -> Iterator[Project]:
        """Every project, current; one whose new code fails to load is listed as last loaded."""
        for name in self.names:
            try:
                self.get(name)
            except ConfigError as exc:  # ProjectError included
                log.warning("shoal: %s", exc)
            except UnknownPipelineError:
                pass  # renamed in its code: listed under its new name
        with self._lock:
            return iter(sorted(self._by_name.values(), key=lambda p: p.pipeline.name))

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._by_name)

    def get(self, name: str) -> Project:
        """The project of a pipeline, with its current code; an unknown name raises an error
        listing the known ones, code that no longer loads a ProjectError saying why."""
        with self._lock:
            project = self._by_name.get(name)
            if project is None:
                raise UnknownPipelineError(name, sorted(self._by_name))
            return self._current(name, project)

    def for_job(self, pipeline: str, root: str) -> Project | None:
        """The project a recorded job ran, if this server still serves it from the same folder."""
        with self._lock:
            project = self._by_name.get(pipeline)
        return project if project is not None and str(project.root) == root else None

    def _current(self, name: str, project: Project) -> Project:
        now = time.monotonic()
        if now - self._looked.get(project.root, -math.inf) < self.recheck_s:
            if project.root in self._broken:
                raise ProjectError(self._broken[project.root])
            return project
        self._looked[project.root] = now
        self._broken.pop(project.root, None)
        try:
            return self._reload(name, project)
        except OSError as exc:
            self._broken[project.root] = f"cannot read project {project.root}: {exc}"
            raise ProjectError(self._broken[project.root]) from exc
        except ProjectError as exc:
            self._broken[project.root] = str(exc)
            raise

    def _reload(self, name: str, project: Project) -> Project:
        """The project, loaded again if its code changed."""
        stamp = code_stamp(project.root, read_config(project.root))
        if stamp == self._stamps.get(project.root):
            return project
        if fingerprint(project.root, read_config(project.root)) == project.fingerprint:
            self._stamps[project.root] = stamp  # touched, not changed
            return project
        fresh = load_project(project.spec)
        del self._by_name[name]
        try:
            self._add(fresh)
        except ConfigError as exc:
            self._by_name[name] = project
            raise ProjectError(f"{fresh.root}: {exc}") from None
        self._stamps[project.root] = stamp  # taken before the hash: a later edit changes it again
        log.info("shoal: reloaded %s: version %s -> %s", project.root, project.fingerprint, fresh.fingerprint)
        if fresh.pipeline.name != name:
            raise UnknownPipelineError(name, sorted(self._by_name))
        return fresh

    def _add(self, project: Project) -> None:
        name = project.pipeline.name
        if name in self._by_name:
            raise ConfigError(f"two projects define pipeline {name!r}: {self._by_name[name].root} and {project.root}")
        self._by_name[name] = project
