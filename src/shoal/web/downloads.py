"""Files a job offers for download: results, report, charts, artifacts, and zips of them.

A finished job's files come from its run folder, written once when it finished. A job still
running is exported from the ledger on request into ``<data>/exports/<job>/``, so a download
always holds every item finished so far. Names from requests are resolved inside the run
folder and refused if they would leave it.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from shoal.errors import NotFoundError
from shoal.outputs import atomic_write, export_parquet, export_results
from shoal.store import JobRecord, Ledger

RESULT_FILES = {"jsonl": "results.jsonl", "csv": "results.csv", "parquet": "results.parquet", "errors": "errors.csv"}
CHARTS = ("runtime.png", "throughput.png")
REPORT_FILES = ("report.json", "performance.txt")
IMAGE = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg"}
VIDEO = {".mp4", ".webm", ".ogv", ".mov", ".m4v"}
STAGING = ".staging"


def _fresh(path: Path, job: JobRecord) -> bool:
    """Written after the job last finished, so it holds every item."""
    return job.finished and job.finished_at is not None and path.is_file() and path.stat().st_mtime >= job.finished_at


def local_out(job: JobRecord) -> Path | None:
    """The job's run folder when it is on this machine; None for a URL (``shoal run --out s3://...``),
    whose result files are exported from the ledger here instead."""
    return None if "://" in job.out else Path(job.out)


def _out(job: JobRecord) -> Path:
    out = local_out(job)
    if out is None:
        raise NotFoundError(f"job {job.id} keeps its files at {job.out}: fetch them from there")
    return out


def result_file(ledger: Ledger, job: JobRecord, kind: str, exports: Path) -> Path:
    """results.jsonl/.csv/.parquet or errors.csv of a job, up to date."""
    name = RESULT_FILES[kind]
    out = local_out(job)
    if out is not None and _fresh(out / name, job):
        return out / name
    folder = out if out is not None and job.finished else exports / job.id
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        export_parquet(ledger, job.id, folder / name)
    else:
        export_results(ledger, job.id, folder)
    return folder / name


def report(ledger: Ledger, job: JobRecord) -> dict[str, Any]:
    """report.json of a finished job, or the same figures computed now for one still running."""
    out = local_out(job)
    if out is not None and _fresh(out / "report.json", job):
        path = out / "report.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    from shoal.report.stats import JobData, summarize

    return summarize(JobData.load(ledger, job.id))


def chart(ledger: Ledger, job: JobRecord, name: str) -> bytes:
    """runtime.png or throughput.png: drawn on first request, and kept once the job finished."""
    if name not in CHARTS:
        raise NotFoundError(f"no chart {name!r}: the charts are {', '.join(CHARTS)}")
    out = local_out(job)
    if out is not None and _fresh(out / name, job):
        return (out / name).read_bytes()
    from shoal.report.charts import runtime_chart, throughput_chart
    from shoal.report.stats import JobData

    buffer = io.BytesIO()
    draw = runtime_chart if name == "runtime.png" else throughput_chart
    draw(JobData.load(ledger, job.id), buffer)
    if job.finished and out is not None:
        with atomic_write(out / name, "wb") as handle:
            handle.write(buffer.getvalue())
    return buffer.getvalue()


def artifact_root(job: JobRecord, item_id: str) -> Path:
    root = (_out(job) / "artifacts").resolve()
    folder = (root / item_id).resolve()
    if item_id in ("", ".", "..", STAGING) or folder.parent != root:
        raise NotFoundError(f"no artifacts for item {item_id!r}")
    return folder


def artifact(job: JobRecord, item_id: str, name: str) -> Path:
    """The file of an item's artifact; anything outside the item's folder is not found."""
    folder = artifact_root(job, item_id)
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise NotFoundError(f"item {item_id} has no artifact {name!r}")
    return path


def artifacts(job: JobRecord, item_id: str) -> list[tuple[str, int, str]]:
    """(name, bytes, kind) of each of an item's artifacts; kind is image, video or other."""
    if local_out(job) is None:
        return []
    folder = artifact_root(job, item_id)
    if not folder.is_dir():
        return []
    found = []
    for parent, _, names in os.walk(folder):
        for filename in sorted(names):
            path = Path(parent, filename)
            found.append((path.relative_to(folder).as_posix(), path.stat().st_size, media_kind(filename)))
    return sorted(found)


def media_kind(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return "image" if suffix in IMAGE else "video" if suffix in VIDEO else "other"


def media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def job_zip(ledger: Ledger, job: JobRecord, exports: Path, item_id: str | None = None) -> Path:
    """A zip of the job (result files, report, charts, artifacts), or of one item's artifacts.

    Written to a temporary file the caller deletes once sent; stored, not compressed: artifacts
    are mostly images and videos, compressed already.
    """
    exports.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{job.id}.", suffix=".zip", dir=exports)
    os.close(fd)
    with zipfile.ZipFile(name, "w", zipfile.ZIP_STORED) as archive:
        if item_id is not None:
            folder = artifact_root(job, item_id)
            if not folder.is_dir():
                raise NotFoundError(f"item {item_id} has no artifacts")
            _add_tree(archive, folder, item_id)
            return Path(name)
        for kind in ("jsonl", "csv", "errors"):
            archive.write(result_file(ledger, job, kind, exports), RESULT_FILES[kind])
        archive.writestr("report.json", json.dumps(report(ledger, job), indent=2))
        if job.finished:
            for chart_name in CHARTS:
                archive.writestr(chart_name, chart(ledger, job, chart_name))
        out = local_out(job)
        root = out / "artifacts" if out is not None else None
        if root is not None and root.is_dir():
            _add_tree(archive, root, "artifacts")
    return Path(name)


def _add_tree(archive: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != STAGING)
        for filename in sorted(names):
            path = Path(parent, filename)
            archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
