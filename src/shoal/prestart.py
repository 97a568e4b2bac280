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

from shoal.engines import Engine, create_engine
from shoal.project import Project, load_project
from shoal.settings import RunSettings


@dataclass
class Prestarted:
    """A project loaded, its settings built, and (for the local engine) its workers starting."""

    project: Project
    settings: RunSettings
    engine: Engine | None  #: None: workers run elsewhere (Celery), or the run does not start them early


def prestart(project: str | Path, inputs: Sequence[str] | None, flags: dict[str, Any]) -> Prestarted:
    loaded = load_project(project)
    settings = settings_for(loaded, inputs, flags)
    if settings.engine_name != "local":
        return Prestarted(loaded, settings, None)
    engine = create_engine(settings, loaded, log_later=True)
    engine.start()
    return Prestarted(loaded, settings, engine)


def settings_for(project: Project, inputs: Sequence[str] | None, flags: dict[str, Any]) -> RunSettings:
    """Flags over SHOAL_* variables over the project's shoal.toml [run] table over defaults."""
    table = dict(project.config.get("run", {}))
    if "inputs" in table:  # inputs in shoal.toml are relative to the project folder
        table["inputs"] = [
            v if "://" in v else str((project.root / Path(v).expanduser()).resolve()) for v in table["inputs"]
        ]
    return RunSettings.build(table, inputs=list(inputs) if inputs else None, **flags)
