"""The run folder: where a run's files go (a directory, or any fsspec URL), who owns it, and
files written there whole or not at all. Light on purpose: a run imports it at start, long before
the result files (Arrow, Parquet) are written."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast


def utc(timestamp: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-25T12:31:08.123Z."""
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_folder(location: str | Path) -> Path:
    """The run folder: a local directory, or any fsspec URL (``s3://bucket/prefix``) as a UPath."""
    if "://" not in str(location):
        return Path(location)
    from upath import UPath

    return cast(Path, UPath(str(location)))  # UPath speaks pathlib's API for any filesystem


def folder_owner(out: Path) -> dict[str, Any] | None:
    """What a run folder's job.json says (the job it belongs to, its ledger), if it is readable."""
    try:
        owner = json.loads((out / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def is_local(path: Path) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` completely or not at all (an object store's PUT is atomic by itself)."""
    if not is_local(path):
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        handle: IO[Any] = path.open(mode, **text)  # type: ignore[call-overload]
        with handle:
            yield handle
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: a team folder's readers need the umask's modes
        with os.fdopen(
            fd, mode, encoding=None if "b" in mode else "utf-8", newline="" if "b" not in mode else None
        ) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask: from /proc where it can be read without changing it (other threads
    create files meanwhile), else by setting it and setting it straight back."""
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/self/status", encoding="ascii") as status:
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
