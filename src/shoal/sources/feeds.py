"""Feeds: how the coordinator takes entries, from finite inputs or from streams that stay open.

A finite feed (files, lists, rows) ends when its inputs do. A streaming feed (a Redis stream, a
journal the web service appends to) stays open, hands over entries as they arrive, and ends only
when a close marker comes. The coordinator tells a feed which entries are safely in the ledger
(`done`), so a stream can acknowledge them: after a crash, unacknowledged entries come again.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import queue
import threading
import time
from collections import deque
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

    def checkpoint(self, upto: int) -> str | None:
        """Where in the inputs to read from to resume at entry ``upto`` or a little before it
        (JSON for the ledger), or None when this feed cannot say."""

    def close(self) -> None: ...


def checkpoint_of(checkpoint: str | None, entries: int) -> tuple[int, list[Any] | None]:
    """(the entry a recorded checkpoint starts at, its position in the inputs); (0, None) when
    there is none, so reading starts at the beginning."""
    if not checkpoint:
        return 0, None
    found = json.loads(checkpoint)
    if found["seq"] > entries:
        return 0, None
    return int(found["seq"]), found["at"]


class FiniteFeed:
    """The entries of finite inputs (sources.Inputs), a batch at a time.

    Inputs whose listing is slow (an object store's pages, a folder of millions being sorted) are
    read ahead on a thread of their own (``background``), so the coordinator, its heartbeats and
    its workers never wait on them; ``read`` then answers at once with what is there. Lists and
    tables, cheap to read, are read on the caller's thread: a second Python thread would only
    compete with the coordinator for the GIL.

    Reading starts at entry ``first`` (where a recorded checkpoint put the inputs), passes over
    the entries before ``skip`` (those already recorded) and ends before ``limit``. Each batch
    notes where in the inputs it began, for checkpoints.
    """

    streaming = False
    BATCH = 2000  #: entries per batch
    AHEAD = 8  #: batches read ahead in the background

    def __init__(
        self,
        entries: Iterator[Entry],
        *,
        first: int = 0,
        skip: int = 0,
        limit: int | None = None,
        background: bool = False,
    ) -> None:
        self._source: Iterator[tuple[int, Any, list[Entry]]] | None = _batches(entries, first, skip, limit, self.BATCH)
        self._taken: deque[Entry] = deque()  #: entries of a batch taken, not yet read
        self._marks: deque[tuple[int, Any]] = deque()  #: (entry, position in the inputs) where batches began
        self._ended = False
        self._stop = threading.Event()
        self._ahead: queue.Queue[tuple[int, Any, list[Entry]] | BaseException | None] | None = None
        self._reader: threading.Thread | None = None
        if background:
            self._ahead = queue.Queue(self.AHEAD)
            self._reader = threading.Thread(target=self._read_ahead, name="shoal-inputs", daemon=True)
            self._reader.start()

    def read(self, limit: int, wait: float) -> list[Entry] | None:
        if not self._taken and not self._ended:
            self._take(wait)
        if not self._taken:
            return None if self._ended else []
        count = min(limit, len(self._taken))
        return [self._taken.popleft() for _ in range(count)]

    def _take(self, wait: float) -> None:
        if self._ahead is None:  # on this thread
            assert self._source is not None
            found: tuple[int, Any, list[Entry]] | BaseException | None = next(self._source, None)
        else:
            try:
                found = self._ahead.get(timeout=wait) if wait > 0 else self._ahead.get_nowait()
            except queue.Empty:
                return
        if found is None:
            self._ended = True
        elif isinstance(found, BaseException):
            self._ended = True
            raise found
        else:
            seq, position, batch = found
            self._marks.append((seq, position))
            self._taken.extend(batch)

    def done(self, upto: int, ingested: bool) -> None:
        """Positions are the job's watermark: nothing to acknowledge."""

    def checkpoint(self, upto: int) -> str | None:
        while len(self._marks) > 1 and self._marks[1][0] <= upto:
            self._marks.popleft()
        if not self._marks or self._marks[0][0] > upto or self._marks[0][1] is None:
            return None
        seq, position = self._marks[0]
        return json.dumps({"seq": seq, "at": position}, separators=(",", ":"))

    def close(self) -> None:
        self._stop.set()
        while self._reader is not None and self._reader.is_alive():  # room, so a waiting reader sees the stop
            with contextlib.suppress(queue.Empty):
                assert self._ahead is not None
                self._ahead.get(timeout=0.05)
        self._ended = True
        self._source = None

    def _read_ahead(self) -> None:
        assert self._source is not None
        assert self._ahead is not None
        try:
            for batch in self._source:
                if not self._hand_over(batch):
                    return
        except BaseException as exc:  # a source that fails (a listing that breaks off) fails the run
            self._hand_over(exc)
            return
        self._hand_over(None)

    def _hand_over(self, item: tuple[int, Any, list[Entry]] | BaseException | None) -> bool:
        assert self._ahead is not None
        while not self._stop.is_set():
            try:
                self._ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _batches(
    entries: Iterator[Entry], first: int, skip: int, limit: int | None, size: int
) -> Iterator[tuple[int, Any, list[Entry]]]:
    """(first entry, where in the inputs it begins, entries) batches from ``skip`` to ``limit``."""
    where = getattr(entries, "position", None)  #: sources.Inputs can say where it is; a plain iterator cannot
    seq = first
    for _ in range(max(0, skip - first)):  # recorded already: read over (at most a batch or so)
        if next(entries, None) is None:
            return
        seq += 1
    while limit is None or seq < limit:
        position = where() if where is not None else None
        want = size if limit is None else min(size, limit - seq)
        batch = list(itertools.islice(entries, want))
        if batch:
            yield seq, position, batch
        seq += len(batch)
        if len(batch) < want:
            return


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

    def checkpoint(self, upto: int) -> str | None:
        """Resumed by counting lines: no checkpoint."""
        return None

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
