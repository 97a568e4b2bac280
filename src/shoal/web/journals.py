"""The journals of the service's streaming jobs: items appended durably, and a close that is final.

A streaming job reads its journal (one JSON line per item) until a close line. An append after
the close would be stored and never read, so appends and the close are taken one at a time per
journal and an append to a closed journal is refused. The server may close a journal itself
when nothing was appended for a while (``--stream-idle-timeout``); the close line says why.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shoal.sources.feeds import append_to_journal

TAIL = 4096  #: bytes read from a journal's end to find a close line (a close line is short)


class Journals:
    """Appends to, and closes, the journals under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, threading.Lock] = {}
        self._closed: set[Path] = set()
        self._guard = threading.Lock()

    def create(self) -> Path:
        path = self.root / f"{uuid.uuid4().hex}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    def append(self, path: Path, items: list[dict[str, Any]], *, close: bool = False) -> bool:
        """Append items (and a close line after them); False if the journal was closed already."""
        with self._lock(path):
            if self.closed(path):
                return False
            append_to_journal(path, [*items, *([{"close": True}] if close else [])])
            if close:
                self._closed.add(path)
            return True

    def close_if_idle(self, path: Path, idle_s: float, since: float, reason: str) -> bool:
        """Close the journal if nothing was appended for ``idle_s`` seconds, counting from
        ``since`` (epoch seconds) at the earliest; True if this call closed it."""
        with self._lock(path):
            if self.closed(path):
                return False
            try:
                last = max(path.stat().st_mtime, since)
            except FileNotFoundError:
                return False
            if time.time() - last < idle_s:
                return False
            append_to_journal(path, [{"close": True, "reason": reason}])
            self._closed.add(path)
            return True

    def closed(self, path: Path) -> bool:
        """Whether the journal's last line is a close line."""
        if path in self._closed:
            return True
        if is_closed(path):
            self._closed.add(path)
            return True
        return False

    def forget(self, path: Path) -> None:
        """The job is over here: drop what was kept about its journal."""
        with self._guard:
            self._locks.pop(path, None)
            self._closed.discard(path)

    @contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            yield


def is_closed(path: Path) -> bool:
    """Whether a journal ends with a close line (read from its end: journals grow long)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL))
            last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    except FileNotFoundError:
        return False
    try:
        fields = json.loads(last)
    except ValueError:  # empty, or the end of a long item line
        return False
    return isinstance(fields, dict) and bool(fields.get("close"))
