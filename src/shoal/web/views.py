"""Ledger rows as API models: a job with its counts (live ones when it runs here), an item."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
from urllib.parse import quote

from sqlalchemy import RowMapping

from shoal.errors import StorageError
from shoal.store import JobRecord, Ledger
from shoal.store.queries import find_job, item_events
from shoal.web import downloads
from shoal.web.schemas import ArtifactPublic, Attempt, Counts, ItemDetail, ItemPublic, JobPublic, Live
from shoal.web.service import JobService

log = logging.getLogger("shoal.web")
ITEM_FIELDS = tuple(f for f in ItemPublic.model_fields if f not in ("artifacts", "result"))


class JobViews:
    """Builds JobPublic. A finished job changes again only when retried, so its record and view are
    remembered (up to MEMORY jobs) for REMEMBER_S seconds: a client polling it costs one query per
    job that often, and a retry, here or from `shoal retry` elsewhere, shows within that time."""

    MEMORY = 10_000
    REMEMBER_S = 2.0

    def __init__(self, ledger: Ledger, service: JobService) -> None:
        self.ledger, self.service = ledger, service
        #: finished jobs: when read, the record, its view and the view as JSON
        self._records: dict[str, tuple[float, JobRecord, JobPublic, bytes]] = {}
        self._lock = threading.Lock()

    def remembered(self, job_id: str) -> tuple[JobRecord, JobPublic, bytes] | None:
        """A finished job's record, view and view as JSON, if read in the last REMEMBER_S seconds."""
        found = self._records.get(job_id)
        if found is None or time.monotonic() - found[0] > self.REMEMBER_S:
            return None
        return found[1:]

    def forget(self, job_id: str) -> None:
        """A job that changed (a retry): read it afresh."""
        with self._lock:
            self._records.pop(job_id, None)

    def find(self, job_id: str) -> JobRecord | None:
        found = self.remembered(job_id)
        return found[0] if found is not None else find_job(self.ledger, job_id)

    def one(self, job: JobRecord) -> JobPublic:
        found = self.remembered(job.id)
        if found is not None:
            return found[1]
        view = self.many([job])[0]
        if job.finished and view.error is None:
            with self._lock:
                if len(self._records) >= self.MEMORY:
                    self._records.clear()
                self._records[job.id] = (time.monotonic(), job, view, view.model_dump_json().encode())
        return view

    def many(self, jobs: list[JobRecord]) -> list[JobPublic]:
        """Views of jobs: counts from the job running here (live), else as the ledger keeps them
        with each job (no item is counted)."""
        views = []
        last_runs = self.ledger.last_runs([job.id for job in jobs]) if jobs else {}
        for job in jobs:
            snap = self._live(job)
            counts = {k: snap[k] for k in ("succeeded", "failed", "pending", "cancelled")} if snap else job.counts
            views.append(self._view(job, counts, snap, last_runs.get(job.id)))
        return views

    def _live(self, job: JobRecord) -> dict[str, Any] | None:
        feed = self.service.feed(job.id)
        snap = None if feed is None else feed.snapshot
        return snap if snap and snap.get("state") == "running" and job.state == "running" else None

    @staticmethod
    def _timing(job: JobRecord, last: RowMapping | None) -> tuple[float | None, float | None]:
        """When the job's latest run (``last``) began, and the seconds it ran: to the job's end,
        to now while it runs, else to that run's end. A retried or resumed job was created long
        before."""
        if job.finished:
            start = None if last is None else last["started_at"]
            return start, round((job.finished_at or time.time()) - (start or job.created_at), 3)
        if last is None or (job.state == "running" and last["ended_at"] is not None):
            return None, None  # no run has begun yet (or a new one is starting)
        end = last["ended_at"] if last["ended_at"] is not None else time.time()
        return last["started_at"], round(end - last["started_at"], 3)

    def _view(
        self, job: JobRecord, counts: dict[str, int], snap: dict[str, Any] | None, last: RowMapping | None
    ) -> JobPublic:
        started, took = self._timing(job, last)
        return JobPublic(
            id=job.id,
            pipeline=job.pipeline,
            state=job.state,  # type: ignore[arg-type]
            counts=Counts(total=sum(counts.values()), **counts),
            live=None if snap is None else Live(**{k: snap[k] for k in Live.model_fields}),
            inputs=json.loads(job.inputs),
            options=json.loads(job.options),
            fingerprint=job.fingerprint,
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
            started_at=started,
            duration_s=took,
            queued=job.state != "running" and not job.finished and self.service.active(job.id),
            error=self.service.error(job.id),
            out=job.out,
        )


def item_public(row: RowMapping, job: JobRecord | None = None, result: Any = None) -> ItemPublic:
    """An item; with ``job``, its artifacts too."""
    found = None if job is None else artifacts_of(job, row["id"])
    return ItemPublic(**{k: row[k] for k in ITEM_FIELDS}, artifacts=found, result=result)


def item_result(row: RowMapping) -> Any:
    """A succeeded item's result record (None for any other)."""
    return _json(row["result"]) if row["status"] == "succeeded" else None


def artifacts_of(job: JobRecord, item_id: str) -> list[ArtifactPublic]:
    """An item's artifacts; none when its run folder's store cannot be read now (logged): the
    item's record is still worth showing."""
    base = f"/api/v1/jobs/{quote(job.id)}/artifacts/{quote(item_id)}/"
    try:
        found = downloads.artifacts(job, item_id)
    except StorageError as exc:
        log.warning("shoal: artifacts of %s in job %s: %s", item_id, job.id, exc)
        return []
    return [
        ArtifactPublic(name=name, size=size, kind=kind, url=base + quote(name))  # type: ignore[arg-type]
        for name, size, kind in found
    ]


def item_detail(ledger: Ledger, job: JobRecord, row: RowMapping) -> ItemDetail:
    return ItemDetail(
        **{k: row[k] for k in ITEM_FIELDS},
        uri=row["uri"],
        meta=_json(row["meta"]),
        result=_json(row["result"]),
        seconds=_json(row["seconds"]),
        error_traceback=row["error_traceback"],
        attempts_log=[
            Attempt(
                kind=e["kind"],
                attempt=e["attempt"],
                at=e["at"],
                worker=e["worker"],
                stage=e["stage"],
                error_type=e["error_type"],
                message=e["message"],
            )
            for e in item_events(ledger, job, row["id"])
        ],
        artifacts=artifacts_of(job, row["id"]),
    )


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
