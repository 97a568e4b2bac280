"""The model registry: versions of a pipeline kept whole, and the aliases that say which serves.

A version is the fingerprint of a project's code and the model files it declares (``[project]
models = ["model.onnx"]`` in shoal.toml, hashed with the code), so a new model with the same code
is a new version. Registering a project copies exactly those files into
``<SHOAL_HOME>/versions/<pipeline>/<version>/`` (whole or not at all), where they stay as they
were, so two versions can be served side by side and any can be rolled back to. The ledger keeps
each version (when, from where, by whom, the figures of its smoke run), the aliases pointing at
them (``production``, ``canary`` with its share of traffic, ``shadow``, any name) and every
change, with the reason, in ``model_events``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update

from shoal.errors import ConfigError, NotFoundError
from shoal.project import Project, code_files, load_project, read_config
from shoal.settings import default_home
from shoal.store.ledger import Ledger
from shoal.store.schema import model_aliases, model_events, model_versions

PRODUCTION, CANARY, SHADOW = "production", "canary", "shadow"


@dataclass(frozen=True)
class ModelVersion:
    pipeline: str
    version: str
    created_at: float
    source: str | None
    created_by: str | None
    folder: str
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Alias:
    pipeline: str
    alias: str
    version: str
    previous: str | None
    weight: float | None
    options: dict[str, Any]
    updated_at: float
    updated_by: str | None


def versions_root() -> Path:
    return default_home() / "versions"


def register(
    ledger: Ledger,
    project_dir: str | Path,
    *,
    source: str | None = None,
    by: str | None = None,
    metrics: dict[str, Any] | None = None,
    root: Path | None = None,
) -> ModelVersion:
    """Keep the project's code and model files as a version (once per fingerprint); the project
    is imported first, so a version that does not import is never registered."""
    project = load_project(project_dir)
    name, version = project.pipeline.name, project.fingerprint
    folder = (root or versions_root()) / name / version
    if not folder.is_dir():
        _copy(project, folder)
    now = time.time()
    with ledger.engine.begin() as conn:
        found = conn.execute(
            select(model_versions).where(model_versions.c.pipeline == name, model_versions.c.version == version)
        ).first()
        if found is None:
            conn.execute(
                insert(model_versions).values(
                    pipeline=name,
                    version=version,
                    created_at=now,
                    source=source,
                    created_by=by,
                    folder=str(folder),
                    metrics=json.dumps(metrics) if metrics else None,
                )
            )
            _event(conn, name, "registered", version, by, source)
        elif metrics:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.pipeline == name, model_versions.c.version == version)
                .values(metrics=json.dumps(metrics))
            )
    return get_version(ledger, name, version)


def _copy(project: Project, folder: Path) -> None:
    """The version's files, written beside the destination and renamed into place whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for path in code_files(project.root, read_config(project.root)):
            target = part / path.relative_to(project.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        part.rename(folder)
    except OSError:
        shutil.rmtree(part, ignore_errors=True)
        if not folder.is_dir():  # another process registering the same version won the rename
            raise


def load_version(record: ModelVersion) -> Project:
    """The version's project, loaded from its kept folder."""
    project = load_project(record.folder)
    if project.fingerprint != record.version:
        raise ConfigError(
            f"{record.folder} no longer holds version {record.version} of {record.pipeline} "
            f"(it hashes to {project.fingerprint}): its files were changed by hand"
        )
    return project


def pipelines(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(model_versions.c.pipeline).distinct().order_by("pipeline")).scalars())


def versions(ledger: Ledger, pipeline: str) -> list[ModelVersion]:
    """A pipeline's versions, newest first."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(model_versions)
            .where(model_versions.c.pipeline == pipeline)
            .order_by(model_versions.c.created_at.desc())
        ).mappings()
        return [_version(row) for row in rows]


def get_version(ledger: Ledger, pipeline: str, version: str) -> ModelVersion:
    """A version by its fingerprint, or by a prefix of it that names one alone."""
    with ledger.engine.connect() as conn:
        rows = list(
            conn.execute(
                select(model_versions).where(
                    model_versions.c.pipeline == pipeline, model_versions.c.version.startswith(version, autoescape=True)
                )
            ).mappings()
        )
    exact = [row for row in rows if row["version"] == version]
    if exact or len(rows) == 1:
        return _version((exact or rows)[0])
    if not rows:
        raise NotFoundError(f"no version {version!r} of pipeline {pipeline!r} (see `shoal models list {pipeline}`)")
    raise ConfigError(f"{version!r} names {len(rows)} versions of {pipeline!r}: give more of it")


def aliases(ledger: Ledger, pipeline: str) -> dict[str, Alias]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(model_aliases).where(model_aliases.c.pipeline == pipeline)).mappings()
        return {row["alias"]: _alias(row) for row in rows}


def set_alias(
    ledger: Ledger,
    pipeline: str,
    alias: str,
    version: str,
    *,
    by: str | None = None,
    weight: float | None = None,
    options: dict[str, Any] | None = None,
    kind: str = "alias",
    detail: str | None = None,
) -> Alias:
    """Point ``alias`` at a registered version; what it named before is kept for a rollback."""
    if not alias or len(alias) > 64:
        raise ConfigError("an alias is 1 to 64 characters")
    if weight is not None and not 0 < weight <= 1:
        raise ConfigError(f"a canary's share of traffic is more than 0% and at most 100%, not {weight:.0%}")
    record = get_version(ledger, pipeline, version)
    with ledger.engine.begin() as conn:
        _point(conn, pipeline, alias, record.version, by=by, weight=weight, options=options, kind=kind, detail=detail)
    return aliases(ledger, pipeline)[alias]


def promote(ledger: Ledger, pipeline: str, version: str, *, by: str | None = None, detail: str | None = None) -> Alias:
    """Make ``version`` production; a canary or shadow of it ends (it is production now), all in
    one transaction, so the record never says a version was promoted that is not production."""
    record = get_version(ledger, pipeline, version)
    with ledger.engine.begin() as conn:
        _promote(conn, pipeline, record.version, by, detail)
    return aliases(ledger, pipeline)[PRODUCTION]


def promote_trial(ledger: Ledger, pipeline: str, trial: str, version: str, *, by: str, detail: str) -> bool:
    """A guardrail's verdict: promote ``version`` only while ``trial`` (canary, shadow) still names
    it, in one transaction, so that two judges of one trial promote once. False if it no longer does."""
    with ledger.engine.begin() as conn:
        if not _drop(conn, pipeline, trial, by, "trial_ended", f"{version} promoted", version):
            return False
        _promote(conn, pipeline, version, by, detail)
        return True


def _promote(conn: Any, pipeline: str, version: str, by: str | None, detail: str | None) -> None:
    _point(conn, pipeline, PRODUCTION, version, by=by, kind="promoted", detail=detail)
    for trial in (CANARY, SHADOW):
        _drop(conn, pipeline, trial, by, "trial_ended", f"{version} promoted", version)


def rollback(ledger: Ledger, pipeline: str, *, by: str | None = None, reason: str | None = None) -> Alias:
    """Production goes back to the version it named before."""
    current = aliases(ledger, pipeline).get(PRODUCTION)
    if current is None or current.previous is None:
        raise ConfigError(f"pipeline {pipeline!r} has no earlier production version to roll back to")
    detail = reason or f"{current.version} -> {current.previous}"
    return set_alias(ledger, pipeline, PRODUCTION, current.previous, by=by, kind="rolled_back", detail=detail)


def drop_alias(
    ledger: Ledger,
    pipeline: str,
    alias: str,
    *,
    by: str | None = None,
    kind: str = "alias_dropped",
    detail: str = "",
    version: str | None = None,
) -> bool:
    """Remove ``alias``; with ``version``, only while it still names that version, so that two
    judges of one canary (a server's watcher twice, or two servers) record one verdict."""
    with ledger.engine.begin() as conn:
        return _drop(conn, pipeline, alias, by, kind, detail, version)


def _point(
    conn: Any,
    pipeline: str,
    alias: str,
    version: str,
    *,
    by: str | None,
    weight: float | None = None,
    options: dict[str, Any] | None = None,
    kind: str,
    detail: str | None,
) -> None:
    """Point ``alias`` at ``version`` (registered) inside the caller's transaction."""
    old = conn.execute(
        select(model_aliases).where(model_aliases.c.pipeline == pipeline, model_aliases.c.alias == alias)
    ).first()
    values = {
        "version": version,
        "weight": weight,
        "options": json.dumps(options) if options else None,
        "updated_at": time.time(),
        "updated_by": by,
    }
    if old is None:
        conn.execute(insert(model_aliases).values(pipeline=pipeline, alias=alias, previous=None, **values))
    else:
        previous = old.version if old.version != version else old.previous
        conn.execute(
            update(model_aliases)
            .where(model_aliases.c.pipeline == pipeline, model_aliases.c.alias == alias)
            .values(previous=previous, **values)
        )
    _event(conn, pipeline, kind, version, by, detail or f"{alias} -> {version}")


def _drop(conn: Any, pipeline: str, alias: str, by: str | None, kind: str, detail: str, version: str | None) -> bool:
    """Remove ``alias`` (only while it names ``version``, if given) inside the caller's transaction."""
    where = [model_aliases.c.pipeline == pipeline, model_aliases.c.alias == alias]
    if version is not None:
        where.append(model_aliases.c.version == version)
    old = conn.execute(select(model_aliases).where(*where)).first()
    if old is None:
        return False
    if conn.execute(delete(model_aliases).where(*where)).rowcount != 1:
        return False  # another judge removed it between the two statements
    _event(conn, pipeline, kind, old.version, by, detail or f"{alias} ({old.version}) removed")
    return True


def events(ledger: Ledger, pipeline: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest changes first: registrations, promotions, rollbacks and why."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(model_events)
            .where(model_events.c.pipeline == pipeline)
            .order_by(model_events.c.id.desc())
            .limit(limit)
        ).mappings()
        return [dict(row) for row in rows]


def _event(conn: Any, pipeline: str, kind: str, version: str | None, by: str | None, detail: str | None) -> None:
    conn.execute(
        insert(model_events).values(pipeline=pipeline, at=time.time(), kind=kind, version=version, by=by, detail=detail)
    )


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        row["pipeline"],
        row["version"],
        row["created_at"],
        row["source"],
        row["created_by"],
        row["folder"],
        json.loads(row["metrics"]) if row["metrics"] else {},
    )


def _alias(row: Any) -> Alias:
    return Alias(
        row["pipeline"],
        row["alias"],
        row["version"],
        row["previous"],
        row["weight"],
        json.loads(row["options"]) if row["options"] else {},
        row["updated_at"],
        row["updated_by"],
    )
