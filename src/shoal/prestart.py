"""Workers started before a run is planned: they import the project and run its setup() while
`shoal run` imports its ledger, reads its inputs and finds or creates the job (about half a second
on a small machine, before a single item could run).

This module imports only what starting them needs (settings, the project, the local engine), not
the ledger. The workers write their output to a scratch log until the job's run folder is known;
then they go on in the run folder's log, their earlier output copied into it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.engines import Engine, local_engine
from shoal.project import Project, fingerprint, is_script, load_project, locate, read_config
from shoal.settings import RunSettings


@dataclass
class Prestarted:
    """A project loaded, its settings built, and (for the local engine) its workers starting."""

    project: Project
    settings: RunSettings
    engine: Engine | None  #: None: workers run elsewhere (Celery), or the run does not start them early


def prestart(project: str | Path, inputs: Sequence[str] | None, flags: dict[str, Any]) -> Prestarted:
    """The run's settings, then its workers started, then the project imported here too.

    The workers start before this process imports the project's code, so that a worker forked
    from it (shoal.engines.forked) has run none of that code: each imports it for itself, and its
    module-level state (a random generator, a connection, an open file) is its own, as in a fresh
    interpreter. A script (``script.py:main``) is not imported here at all; its workers are fresh
    interpreters (a fork would carry this process's import path, not the folder it was run in)."""
    if is_script(project):
        loaded = load_project(project)
        settings = settings_for(loaded, inputs, flags)
        return Prestarted(loaded, settings, _workers(settings, loaded.spec, loaded.fingerprint, fork=False))
    folder = locate(project)
    config = read_config(folder)
    digest = fingerprint(folder, config)
    settings = settings_for_config(folder, config, inputs, flags)
    engine = _workers(settings, str(folder), digest, fork=True)
    try:
        loaded = load_project(project)
    except BaseException:
        if engine is not None:
            engine.stop(kill=True)
        raise
    if loaded.fingerprint == digest:
        return Prestarted(loaded, settings, engine)
    if engine is not None:  # edited meanwhile: these workers would refuse the version loaded here
        engine.stop(kill=True)
    settings = settings_for(loaded, inputs, flags)
    return Prestarted(loaded, settings, _workers(settings, loaded.spec, loaded.fingerprint, fork=False))


def _workers(settings: RunSettings, spec: str, digest: str, *, fork: bool) -> Engine | None:
    """The local engine, started; None for an engine whose workers run elsewhere. ``fork``: no
    project's code has run in this process, so its workers may be forked from it."""
    if settings.engine_name != "local":
        return None
    engine = local_engine(settings, spec, digest, log_later=True, fork=fork)
    engine.start()
    return engine


def settings_for(project: Project, inputs: Sequence[str] | None, flags: dict[str, Any]) -> RunSettings:
    """Flags over SHOAL_* variables over the project's shoal.toml [run] table over defaults."""
    return settings_for_config(project.root, project.config, inputs, flags)


def settings_for_config(
    root: Path, config: dict[str, Any], inputs: Sequence[str] | None, flags: dict[str, Any]
) -> RunSettings:
    """settings_for, from a project's folder and shoal.toml before its code is imported."""
    table = dict(config.get("run", {}))
    if "inputs" in table:  # inputs in shoal.toml are relative to the project folder
        table["inputs"] = [v if "://" in v else str((root / Path(v).expanduser()).resolve()) for v in table["inputs"]]
    return RunSettings.build(table, inputs=list(inputs) if inputs else None, **flags)
