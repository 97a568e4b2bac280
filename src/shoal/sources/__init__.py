"""Sources: turn --input values into a stream of entries with stable item ids.

An input is a folder (its files, recursively), a glob, a single file, a list of URIs (``.txt``,
``.uris``, ``.list``), rows of a CSV/TSV or JSONL file (``.csv``, ``.tsv``, ``.jsonl``,
``.ndjson``), or any fsspec URL (``s3://bucket/prefix/``, ``https://host/file.jpg``). Order is
deterministic and ids derive from what the entry is, so the same inputs give the same items on
every run, and a repeated input is the same item.

Every source can say where its next entry begins (``position``) and read on from there
(``resume``): a list or a table by its byte offset, a listing by how many of its paths are done.
A resumed job starts reading where its recorded entries end, instead of reading and identifying
them all again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from shoal.errors import InputError

if TYPE_CHECKING:
    from shoal.access import ReadPolicy
    from shoal.sources.feeds import Feed
    from shoal.store import JobRecord

LIST_SUFFIXES = (".txt", ".uris", ".list")
ROW_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


class Entry(NamedTuple):
    """One entry of the inputs: an item to process, or an unreadable one to record as failed."""

    id: str
    input: str  #: the input as people name it (a path, a URL, data.csv:12)
    uri: str | None = None  #: the file to read; None for a data row
    meta: dict[str, Any] | None = None  #: the row's fields
    error: str | None = None  #: why this entry cannot be processed at all


class Source(Protocol):
    """A lazily read input that can say where it is and read on from there."""

    def __iter__(self) -> Iterator[Entry]: ...

    def position(self) -> Any:
        """Where the entry after the last one read begins (JSON); None before any was read."""

    def resume(self, position: Any) -> Iterator[Entry]:
        """The entries from a ``position()`` on."""


class Counted:
    """A source that resumes by counting: its entries are read again, but skipped before they are
    identified (no hashing, no checks), which is all a listing allows."""

    _done = 0

    def _raw(self) -> Iterator[Any]:
        """What the source lists, in order, before it becomes entries."""
        raise NotImplementedError

    def _entry(self, raw: Any) -> Entry:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Entry]:
        return self.resume(0)

    def position(self) -> int:
        return self._done

    def resume(self, position: Any) -> Iterator[Entry]:
        self._done = int(position or 0)
        for raw in itertools.islice(self._raw(), self._done, None):
            self._done += 1
            yield self._entry(raw)


class _NoEntries(Counted):
    """A stream, validated among finite inputs: its entries come through its feed."""

    def _raw(self) -> Iterator[Any]:
        return iter(())


class Inputs:
    """Every entry of a job's inputs, in order, from the start or from a ``position()``."""

    def __init__(self, sources: list[Source], start: list[Any] | None = None) -> None:
        self.sources = sources
        self._index: int = int(start[0]) if start else 0
        at = start[1] if start else None
        self._reading = self._open(at)

    def __iter__(self) -> Inputs:
        return self

    def __next__(self) -> Entry:
        while self._reading is not None:
            try:
                return next(self._reading)
            except StopIteration:
                self._index += 1
                self._reading = self._open(None)
        raise StopIteration

    def position(self) -> list[Any]:
        """Where the next entry begins: [input index, that input's own position]."""
        inside = self.sources[self._index].position() if self._index < len(self.sources) else None
        return [self._index, inside]

    def _open(self, at: Any) -> Iterator[Entry] | None:
        if self._index >= len(self.sources):
            return None
        source = self.sources[self._index]
        reading: Iterator[Entry] = iter(source) if at is None else source.resume(at)
        return reading


def open_inputs(
    inputs: Iterable[str], base: Path | None = None, start: list[Any] | None = None, policy: ReadPolicy | None = None
) -> Inputs:
    """All entries of all inputs, in order (from ``start``, a position). Every input is checked
    now, before any is read; with a read ``policy``, against it, and so is every entry."""
    sources = [open_input(value, base or Path.cwd(), policy) for value in inputs]
    if not sources:
        raise InputError("no inputs: pass --input PATH_OR_URL, or set inputs in shoal.toml")
    return Inputs(sources, start)


def open_feed(inputs: list[str], job: JobRecord, limit: int | None = None, policy: ReadPolicy | None = None) -> Feed:
    """The feed a job reads: its inputs from the first unrecorded entry on, or its stream."""
    from shoal.sources.feeds import FiniteFeed, checkpoint_of

    streams = [value for value in inputs if is_stream(value)]
    if not streams:
        seq, start = checkpoint_of(job.checkpoint, job.entries)
        entries = open_inputs(inputs, start=start, policy=policy)
        slow = any(getattr(source, "slow", False) for source in entries.sources)
        return FiniteFeed(entries, first=seq, skip=job.entries, limit=limit, background=slow)
    if len(inputs) > 1:
        raise InputError("a stream must be a job's only input")
    if streams[0].startswith(JOURNAL):
        from shoal.sources.feeds import JournalFeed

        return JournalFeed(journal_path(streams[0]), skip=job.entries)
    from shoal.sources.redis_stream import RedisStreamFeed

    return RedisStreamFeed(streams[0], f"shoal.{job.key}", start=job.entries)


JOURNAL = "shoal+journal://"  #: a streaming job of the web service: items POSTed to it, in a file


def is_stream(value: str) -> bool:
    return value.startswith(("redis+stream://", JOURNAL))


def journal_path(value: str) -> Path:
    return Path(value.removeprefix(JOURNAL))


def open_input(value: str, base: Path, policy: ReadPolicy | None = None) -> Source:
    """The source for one --input value; raises InputError if it cannot be opened at all, and
    ReadRefusedError if the read ``policy`` does not allow it (by its real path, for a local one)."""
    from shoal.sources import files, rows, uri_list

    value = value.strip()
    if not value:
        raise InputError("an --input is empty")
    if value.startswith(JOURNAL):
        return _NoEntries()
    if is_stream(value):
        from shoal.sources.redis_stream import parse

        parse(value)  # a malformed URL fails now; the stream itself is opened by the run
        return _NoEntries()
    if "#segment=" in value:  # videos split into items of N frames (sources.segments)
        from shoal.sources.segments import open_segmented

        return open_segmented(value, base, policy)
    local = files.local_path(value, base)
    if local is None:  # a URL of some fsspec filesystem
        if policy is not None:
            policy.remote(value)
        if value.lower().endswith(LIST_SUFFIXES):
            return uri_list.UriList(value, policy)
        if value.lower().endswith(ROW_SUFFIXES):
            return rows.Rows(value, policy)
        return files.RemoteFiles(value)
    if files.has_glob(str(local)):
        if policy is not None:
            policy.check(files.glob_root(str(local)))
        return files.Glob(local, policy)
    if policy is not None:
        policy.real(str(local))  # the input itself, wherever its name leads
    if local.is_dir():
        return files.Folder(local, policy)
    if not local.exists():
        raise InputError(f"input not found: {value}")
    if local.suffix.lower() in LIST_SUFFIXES:
        return uri_list.UriList(str(local), policy)
    if local.suffix.lower() in ROW_SUFFIXES:
        return rows.Rows(str(local), policy)
    return files.SingleFile(local)
