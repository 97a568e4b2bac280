"""Removing a job for good: its ledger rows, its run folder and its uploads, together.

The rows go first, in one transaction that a running job refuses, so nothing of a job still in
use is touched. A folder is removed only when it is the job's own: a run folder whose job.json
names the job, an upload folder no other submission uses.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from shoal.errors import ConfigError
from shoal.run_folder import folder_owner, is_local, run_folder
from shoal.store import JobRecord, Ledger
from shoal.store.schema import submissions
from shoal.store.submissions import submission

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class Removed:
    """What removing a job took away, and what it left (and why)."""

    job: JobRecord
    folders: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def remove_job(ledger: Ledger, job_id: str) -> Removed:
    """Remove a job's rows, then its run folder and its uploads."""
    row = submission(ledger, job_id)
    upload = row["upload"] if row is not None else None
    removed = Removed(ledger.delete_job(job_id))
    _remove_run_folder(removed)
    if upload and not _upload_in_use(ledger, upload):
        _remove(Path(upload), removed)
    return removed


def prune(ledger: Ledger, older_than: str) -> list[Removed]:
    """Remove every job not running whose last change is older than ``older_than`` (30d, 12h)."""
    cutoff = time.time() - seconds(older_than)
    done: list[Removed] = []
    while batch := ledger.jobs_before(cutoff):
        done += [remove_job(ledger, job.id) for job in batch]
    return done


def seconds(span: str) -> float:
    """A span such as 30d, 12h, 90m or 45s, in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", span)
    if match is None:
        raise ConfigError(f"--older-than {span!r}: give a number and a unit, as in 30d, 12h, 90m or 45s")
    return float(match[1]) * _UNITS[match[2]]


def _remove_run_folder(removed: Removed) -> None:
    out = run_folder(removed.job.out)
    owner = folder_owner(out)
    if owner is None:
        if out.exists():
            removed.kept.append(f"{out} (it has no job.json naming job {removed.job.id})")
        return
    if owner.get("job_id") != removed.job.id:
        removed.kept.append(f"{out} (its job.json names another job)")
        return
    _remove(out, removed)


def _remove(folder: Path, removed: Removed) -> None:
    try:
        if is_local(folder):
            shutil.rmtree(folder)
        else:
            folder.fs.rm(folder.path, recursive=True)  # type: ignore[attr-defined]
    except OSError as exc:
        removed.kept.append(f"{folder} ({exc.strerror or exc})")
        return
    removed.folders.append(str(folder))


def _upload_in_use(ledger: Ledger, upload: str) -> bool:
    with ledger.engine.connect() as conn:
        return bool(conn.execute(select(func.count()).where(submissions.c.upload == upload)).scalar())
