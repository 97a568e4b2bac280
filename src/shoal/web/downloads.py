"""Files a job offers for download: results, report, charts, artifacts, and zips of them.

A finished job's files come from its run folder, written once when it finished. A job still
running is exported from the ledger on request into ``<data>/exports/<job>/``, so a download
always holds every item finished so far. Artifacts are read where the workers wrote them: the
local run folder or its URL (``shoal run --out s3://...``). Names from requests are resolved
inside the run folder and refused if they would leave it.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shoal.errors import NotFoundError, RangeNotSatisfiableError, ShoalError, StorageError
from shoal.outputs import export_results
from shoal.run_folder import atomic_write, is_local, run_folder
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


def result_file(ledger: Ledger, job: JobRecord, kind: str, exports: Path) -> Path:
    """results.jsonl/.csv/.parquet or errors.csv of a job, up to date."""
    name = RESULT_FILES[kind]
    out = local_out(job)
    if out is not None and _fresh(out / name, job):
        return out / name
    folder = out if out is not None and job.finished else exports / job.id
    folder.mkdir(parents=True, exist_ok=True)
    version = _version(job)
    stamp = folder / ".exported"
    if not (folder / name).is_file() or not stamp.is_file() or stamp.read_text() != version:
        export_results(ledger, job.id, folder)  # every file in one pass; kept until the job moves on
        stamp.write_text(version)
    return folder / name


def _version(job: JobRecord) -> str:
    """What a job's exported files depend on: they are made again only when it changes."""
    return f"{job.state}:{job.updated_at}:{job.pending}:{job.succeeded}:{job.failed}:{job.cancelled}"


def report(ledger: Ledger, job: JobRecord) -> dict[str, Any]:
    """report.json of a finished job, or the same figures computed now for one still running."""
    out = local_out(job)
    if out is not None and _fresh(out / "report.json", job):
        path = out / "report.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    from shoal.report import summarize

    return summarize(ledger, job.id)


def chart(ledger: Ledger, job: JobRecord, name: str) -> bytes:
    """runtime.png or throughput.png: drawn on first request, and kept once the job finished."""
    if name not in CHARTS:
        raise NotFoundError(f"no chart {name!r}: the charts are {', '.join(CHARTS)}")
    out = local_out(job)
    if out is not None and _fresh(out / name, job):
        return (out / name).read_bytes()
    from shoal.report import job_timeline
    from shoal.report.charts import runtime_chart, throughput_chart

    buffer = io.BytesIO()
    draw = runtime_chart if name == "runtime.png" else throughput_chart
    draw(job_timeline(ledger, job.id), buffer)
    if job.finished and out is not None:
        with atomic_write(out / name, "wb") as handle:
            handle.write(buffer.getvalue())
    return buffer.getvalue()


def artifact_root(job: JobRecord, item_id: str) -> Path:
    """An item's artifact folder, in a local run folder or under a URL (``--out s3://...``)."""
    if item_id in ("", ".", "..", STAGING) or "/" in item_id or "\\" in item_id:
        raise NotFoundError(f"no artifacts for item {item_id!r}")
    root = run_folder(job.out) / "artifacts"
    if not is_local(root):
        return root / item_id
    with _no_such_file(f"no artifacts for item {item_id!r}"):
        folder = (root.resolve() / item_id).resolve()
    if folder.parent != root.resolve():  # a symlink out of the run folder
        raise NotFoundError(f"no artifacts for item {item_id!r}")
    return folder


def artifact(job: JobRecord, item_id: str, name: str) -> Path:
    """The file of an item's artifact; anything outside the item's folder is not found."""
    folder = artifact_root(job, item_id)
    missing = NotFoundError(f"item {item_id} has no artifact {name!r}")
    if not name or name.startswith("/") or ".." in PurePosixPath(name).parts:
        raise missing
    path = folder.joinpath(*PurePosixPath(name).parts)
    if is_local(folder):
        with _no_such_file(str(missing)):
            path = path.resolve()
            if not path.is_relative_to(folder) or not path.is_file():
                raise missing
        return path
    with _remote(folder):
        folder.fs.invalidate_cache()  # type: ignore[attr-defined]  # a running job adds files
        found = path.is_file()
    if not found:
        raise missing
    return path


def artifacts(job: JobRecord, item_id: str) -> list[tuple[str, int, str]]:
    """(name, bytes, kind) of each of an item's artifacts; kind is image, video or other."""
    return [(name, size, media_kind(name)) for name, size, _ in _files(artifact_root(job, item_id))]


def _files(folder: Path) -> list[tuple[str, int, Path]]:
    """(name under folder, bytes, path) of every file below ``folder``, local or at a URL; none
    under a staging folder (artifacts of items not finished), none linked from outside it."""
    found = []
    if is_local(folder):
        for parent, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != STAGING]
            for filename in names:
                path = Path(parent, filename)
                if path.resolve().is_relative_to(folder.resolve()) and path.is_file():
                    found.append((path.relative_to(folder).as_posix(), path.stat().st_size, path))
        return sorted(found)
    with _remote(folder):
        fs, base = folder.fs, folder.path.rstrip("/")  # type: ignore[attr-defined]
        fs.invalidate_cache()  # a running job adds files: list what is there now
        for key, info in fs.find(base, detail=True).items():
            name = key[len(base) + 1 :]
            if name and not name.startswith(f"{STAGING}/"):
                found.append((name, int(info.get("size") or 0), folder.joinpath(*name.split("/"))))
    return sorted(found)


@contextmanager
def _no_such_file(message: str) -> Iterator[None]:
    """A name no file can have (a NUL, a part over 255 bytes, a loop of links) is not found,
    rather than an error from the file system (RuntimeError: a loop of links, in Python 3.11)."""
    try:
        yield
    except (OSError, ValueError, RuntimeError) as exc:
        raise NotFoundError(message) from exc


@contextmanager
def _remote(folder: Path) -> Iterator[None]:
    """Errors of an object store (no s3fs, no credentials, no network) as one StorageError."""
    try:
        yield
    except ShoalError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot read {folder}: {type(exc).__name__}: {exc}") from exc


def media_kind(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return "image" if suffix in IMAGE else "video" if suffix in VIDEO else "other"


def media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def open_remote(path: Path) -> tuple[IO[bytes], int]:
    """An artifact at a URL, opened, and its size: opened before an answer is sent, so a failure
    is an error answer rather than a truncated download."""
    with _remote(path):
        return path.open("rb"), path.stat().st_size


def chunks(handle: IO[bytes], first: int = 0, length: int | None = None, size: int = 1 << 20) -> Iterator[bytes]:
    """``length`` bytes of a file from ``first`` (the rest when None), a chunk at a time (a video
    need not fit in memory); closes the file."""
    with handle:
        if first:
            handle.seek(first)
        left = length
        while left is None or left > 0:
            block = handle.read(size if left is None else min(size, left))
            if not block:
                break
            if left is not None:
                left -= len(block)
            yield block


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The span (first, last byte) a ``Range: bytes=...`` header asks of a ``size``-byte file;
    None for the whole file (no header, several ranges, another unit: a 200 is a valid answer)."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d{0,19})\s*-\s*(\d{0,19})\s*", header or "", re.ASCII)
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # bytes=-N: the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiableError(size)
        return max(0, size - int(last)), size - 1
    if int(first) >= size or (last and int(last) < int(first)):
        raise RangeNotSatisfiableError(size)
    return int(first), min(int(last), size - 1) if last else size - 1


def job_zip(ledger: Ledger, job: JobRecord, exports: Path, item_id: str | None = None) -> Path:
    """A zip of the job (result files, report, charts, artifacts), or of one item's artifacts.

    Written to a temporary file the caller deletes once sent; stored, not compressed: artifacts
    are mostly images and videos, compressed already.
    """
    exports.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{job.id}.", suffix=".zip", dir=exports)
    os.close(fd)
    try:
        _write_zip(Path(name), ledger, job, exports, item_id)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _write_zip(name: Path, ledger: Ledger, job: JobRecord, exports: Path, item_id: str | None) -> None:
    with zipfile.ZipFile(name, "w", zipfile.ZIP_STORED) as archive:
        if item_id is not None:
            if not _add_tree(archive, artifact_root(job, item_id), item_id):
                raise NotFoundError(f"item {item_id} has no artifacts")
            return
        for kind in ("jsonl", "csv", "errors"):
            archive.write(result_file(ledger, job, kind, exports), RESULT_FILES[kind])
        archive.writestr("report.json", json.dumps(report(ledger, job), indent=2))
        if job.finished:
            for chart_name in CHARTS:
                archive.writestr(chart_name, chart(ledger, job, chart_name))
        _add_tree(archive, run_folder(job.out) / "artifacts", "artifacts")


def _add_tree(archive: zipfile.ZipFile, folder: Path, prefix: str) -> int:
    """Every file under ``folder`` into the archive under ``prefix``; returns how many."""
    files = _files(folder)
    for name, _, path in files:
        if is_local(path):
            archive.write(path, f"{prefix}/{name}")
        else:
            with (
                _remote(path),
                path.open("rb") as source,
                archive.open(f"{prefix}/{name}", "w", force_zip64=True) as target,
            ):
                shutil.copyfileobj(source, target, 1 << 20)
    return len(files)
