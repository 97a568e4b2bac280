"""Sources: turn --input values into a stream of entries with stable item ids.

An input is a folder (its files, recursively), a glob, a single file, a list of URIs (``.txt``,
``.uris``, ``.list``), rows of a CSV/TSV or JSONL file (``.csv``, ``.tsv``, ``.jsonl``,
``.ndjson``), or any fsspec URL (``s3://bucket/prefix/``, ``https://host/file.jpg``). Order is
deterministic and ids derive from what the entry is, so the same inputs give the same items on
every run, and a repeated input is the same item.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from shoal.errors import InputError

if TYPE_CHECKING:
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
    """A lazily read input."""

    def __iter__(self) -> Iterator[Entry]: ...


class _NoEntries:
    """A stream, validated among finite inputs: its entries come through its feed."""

    def __iter__(self) -> Iterator[Entry]:
        return iter(())


def open_inputs(inputs: Iterable[str], base: Path | None = None) -> Iterator[Entry]:
    """All entries of all inputs, in order. Every input is checked now, before any is read."""
    sources = [open_input(value, base or Path.cwd()) for value in inputs]
    if not sources:
        raise InputError("no inputs: pass --input PATH_OR_URL, or set inputs in shoal.toml")
    return itertools.chain.from_iterable(sources)


def open_feed(inputs: list[str], job: JobRecord, limit: int | None = None) -> Feed:
    """The feed a job reads: its inputs from the first unrecorded entry on, or its stream."""
    from shoal.sources.feeds import FiniteFeed

    streams = [value for value in inputs if is_stream(value)]
    if not streams:
        return FiniteFeed(open_inputs(inputs), skip=job.entries, limit=limit)
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


def open_input(value: str, base: Path) -> Source:
    """The source for one --input value; raises InputError if it cannot be opened at all."""
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
    local = files.local_path(value, base)
    if local is None:  # a URL of some fsspec filesystem
        if value.lower().endswith(LIST_SUFFIXES):
            return uri_list.UriList(value)
        if value.lower().endswith(ROW_SUFFIXES):
            return rows.Rows(value)
        return files.RemoteFiles(value)
    if files.has_glob(str(local)):
        return files.Glob(local)
    if local.is_dir():
        return files.Folder(local)
    if not local.exists():
        raise InputError(f"input not found: {value}")
    if local.suffix.lower() in LIST_SUFFIXES:
        return uri_list.UriList(str(local))
    if local.suffix.lower() in ROW_SUFFIXES:
        return rows.Rows(str(local))
    return files.SingleFile(local)
