"""Feeds: how the coordinator takes entries, from finite inputs or from streams that stay open.

A finite feed (files, lists, rows) ends when its inputs do. A streaming feed (a Redis stream, a
journal the web service appends to) stays open, hands over entries as they arrive, and ends only
when a close marker comes. The coordinator tells a feed which entries are safely in the ledger
(`done`), so a stream can acknowledge them: after a crash, unacknowledged entries come again.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from shoal.sources import Entry
from shoal.sources._ids import item_id, user_id


class Feed(Protocol):
    """Entries for the coordinator, a batch at a time."""

    streaming: bool  #: stays open for entries yet to come

    def read(self, limit: int, wait: float) -> list[Entry] | None:
        """Up to ``limit`` entries, waiting up to ``wait`` seconds for the first; None once ended."""

    def done(self, upto: int, ingested: bool) -> None:
        """Entries before position ``upto`` (counted from the job's first entry) are recorded;
        ``ingested``: the ledger records that the feed ended and every entry is in."""

    def close(self) -> None: ...


class FiniteFeed:
    """The entries of finite inputs, from a position on (resuming skips what is recorded)."""

    streaming = False

    def __init__(self, entries: Iterator[Entry], *, skip: int = 0, limit: int | None = None) -> None:
        self._entries: Iterator[Entry] | None = itertools.islice(entries, skip, limit)

    def read(self, limit: int, wait: float) -> list[Entry] | None:
        if self._entries is None:
            return None
        batch = list(itertools.islice(self._entries, limit))
        if len(batch) < limit:
            self._entries = None
        return batch

    def done(self, upto: int, ingested: bool) -> None:
        """Positions are the job's watermark: nothing to acknowledge."""

    def close(self) -> None:
        self._entries = None


def stream_entry(fields: dict[str, Any], key: str, enqueued_at: float) -> Entry:
    """An entry from a stream message: ``uri`` (the file), optional ``id`` and ``meta`` (JSON).

    Every message is its own item (``key`` is unique per message); ``meta.enqueued_at`` keeps when
    it was sent, for end-to-end latency. A message whose ``meta`` is not a JSON object becomes a
    failed item naming the message, and the stream goes on.
    """
    uri = fields.get("uri") or None
    name = uri.rstrip("/").rsplit("/", 1)[-1] if uri else "message"
    meta = fields.get("meta") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError as exc:
            return bad_line(key, f"its meta is not valid JSON ({exc})")
    if not isinstance(meta, dict):
        return bad_line(key, "its meta must be a JSON object")
    meta = {**meta, "enqueued_at": enqueued_at}
    if fields.get("id"):
        return Entry(user_id(fields["id"]), uri or str(fields["id"]), uri, meta)
    return Entry(item_id(name, key), uri or key, uri, meta)


def bad_line(key: str, reason: str) -> Entry:
    """A line or message that cannot be read at all: a failed item naming it."""
    return Entry(item_id(key.rsplit("/", 1)[-1], key), key, error=f"{key}: {reason}")


class JournalFeed:
    """A JSON-lines journal that another process appends to (the web service's streaming jobs).

    Each line is ``{"uri", "id"?, "meta"?, "enqueued_at"}``; a line ``{"close": true}`` ends it.
    Positions are line numbers, so resuming skips the recorded lines like a finite input.
    """

    streaming = True
    POLL_S = 0.01  #: seconds between looks at the file while waiting

    def __init__(self, path: Path, *, skip: int = 0) -> None:
        self.path = path
        self._handle: Any = None
        self._line = 0
        self._skip = skip
        self._ended = False

    def read(self, limit: int, wait: float) -> list[Entry] | None:
        if self._ended:
            return None
        deadline = time.monotonic() + wait
        batch: list[Entry] = []
        while True:
            batch += self._available(limit - len(batch))
            if batch or self._ended or time.monotonic() >= deadline:
                return batch if batch or not self._ended else None
            time.sleep(self.POLL_S)

    def _available(self, limit: int) -> list[Entry]:
        if self._handle is None:
            if not self.path.exists():
                return []
            self._handle = self.path.open("r", encoding="utf-8")
        batch: list[Entry] = []
        while len(batch) < limit:
            position = self._handle.tell()
            line = self._handle.readline()
            if not line.endswith("\n"):  # nothing new, or a line still being written
                self._handle.seek(position)
                return batch
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except ValueError as exc:  # a line torn by a crash, or damaged: reported, then skipped
                fields = {"error": f"not a valid journal line ({exc})"}
            if not isinstance(fields, dict):
                fields = {"error": "not a valid journal line (not a JSON object)"}
            if fields.get("close"):
                self._ended = True
                return batch
            self._line += 1  # entries are counted like the coordinator counts them
            if self._line <= self._skip:
                continue
            key = f"{self.path.name}:{self._line}"
            if "error" in fields:
                batch.append(bad_line(key, fields["error"]))
                continue
            try:
                enqueued_at = float(fields.get("enqueued_at") or time.time())
            except (TypeError, ValueError):
                enqueued_at = time.time()
            batch.append(stream_entry(fields, key, enqueued_at))
        return batch

    def done(self, upto: int, ingested: bool) -> None:
        """Lines are kept: they are the job's record of what was sent."""

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def append_to_journal(path: Path, messages: list[dict[str, Any]]) -> None:
    """Append messages to a journal durably (the caller may acknowledge them afterwards).

    Writers hold an exclusive lock and write whole lines in one call, so concurrent appends never
    interleave; a line left unfinished by a writer that died is ended first, so it stands alone
    (and is reported as damaged) instead of spoiling the next one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = [{**m, "enqueued_at": m.get("enqueued_at", time.time())} for m in messages]
    data = "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in stamped).encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
