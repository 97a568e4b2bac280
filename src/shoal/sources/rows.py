"""CSV/TSV and JSONL rows: one item per row, its fields in ``item.meta``.

A row's file comes from its ``uri``, ``url``, ``path`` or ``file`` column when it has one; its id
from an ``id`` column, else from its position (the file and the line it starts on), so two rows
never share an id, even two rows alike.

A row that cannot be read becomes a failed item naming its line, and the rest go on: a row with
the wrong number of fields, bytes that are not UTF-8, a line that is not JSON, and a CSV row the
parser cannot delimit (an unterminated quote). The parser is strict, so such a row is an error,
never a silent end of input; the lines after it are read again as rows of their own.

The position of a table is the byte offset and number of the line its next row starts on: a
resume reads the header, then seeks there.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from shoal.sources import Entry
from shoal.sources._ids import item_id, safe_text, slug, user_id
from shoal.sources.files import local_path, refused
from shoal.sources.uri_list import decode, open_binary

if TYPE_CHECKING:
    from shoal.access import ReadPolicy

FILE_COLUMNS = ("uri", "url", "path", "file")


class Rows:
    """Rows of a CSV, TSV or JSONL file."""

    def __init__(self, location: str, policy: ReadPolicy | None = None) -> None:
        self.location = location
        self.policy = policy  #: what a row's file column may name: each is an input of its own
        self.name = location.rstrip("/").rsplit("/", 1)[-1]
        self.base = os.path.dirname(os.path.abspath(location)) if "://" not in location else None
        where = os.path.abspath(location) if "://" not in location else location
        self._file_key = hashlib.sha1(where.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        self._lines: _Lines | None = None

    def position(self) -> list[int] | None:
        return None if self._lines is None else self._lines.next_line()

    def __iter__(self) -> Iterator[Entry]:
        return self.resume(None)

    def resume(self, position: Any) -> Iterator[Entry]:
        if self.location.lower().endswith((".jsonl", ".ndjson")):
            return self._jsonl(position)
        return self._csv(position)

    def _csv(self, position: Any) -> Iterator[Entry]:
        delimiter = "\t" if self.location.lower().endswith(".tsv") else ","
        with open_binary(self.location) as handle:
            lines = self._lines = _Lines(handle)
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield self._bad(1, f"not a readable CSV header ({exc})")
                return
            if _undecodable(header) or any("\0" in name for name in header):
                yield self._bad(1, "not a CSV file: its first line is binary data, not UTF-8 text")
                return
            if position:
                lines.seek(*position)
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
            width = len(header)
            while True:
                lines.begin_row()
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    bad = self._bad(lines.row_start, _csv_problem(exc, lines))
                    lines.retry_after_first()  # before the yield: the position is after the bad line
                    reader = csv.reader(lines, delimiter=delimiter, strict=True)
                    yield bad
                    continue
                if not row:
                    continue  # a blank line
                if _undecodable(row):
                    yield self._bad(lines.row_start, "not UTF-8 text (say, a Latin-1 byte)")
                elif any("\0" in value for value in row):
                    yield self._bad(lines.row_start, "holds a NUL byte: binary data, not text")
                elif len(row) != width:
                    yield self._bad(lines.row_start, f"row has {len(row)} fields, the header has {width}")
                else:
                    yield self._entry(lines.row_start, dict(zip(header, row, strict=True)))

    def _jsonl(self, position: Any) -> Iterator[Entry]:
        with open_binary(self.location) as handle:
            lines = self._lines = _Lines(handle)
            if position:
                lines.seek(*position)
            while True:
                lines.begin_row()
                text = next(lines, None)
                if text is None:
                    return
                line = lines.number
                if not text.strip():
                    continue
                if _undecodable([text]):
                    yield self._bad(line, "not UTF-8 text")
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield self._bad(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
                    continue
                if not isinstance(row, dict):
                    yield self._bad(line, f"expected a JSON object, found {type(row).__name__}")
                else:
                    yield self._entry(line, row)

    def _entry(self, line: int, row: dict[str, Any]) -> Entry:
        keys = {k.lower(): k for k in row if isinstance(k, str)}
        column = next((keys[c] for c in FILE_COLUMNS if c in keys and row[keys[c]]), None)
        uri = self._uri(str(row[column])) if column else None
        label = f"{self.name}:{line}" if uri is None else uri
        if "id" in keys and row[keys["id"]] not in (None, ""):
            return refused(Entry(user_id(row[keys["id"]]), label, uri, row), self.policy)
        name = uri.rstrip("/").rsplit("/", 1)[-1] if uri else self.name.rsplit(".", 1)[0]
        return refused(Entry(f"{slug(name)}-{line}-{self._file_key}", label, uri, row), self.policy)

    def _uri(self, value: str) -> str:
        path = local_path(value, Path(self.base)) if self.base else None
        return os.path.abspath(path) if path is not None else value

    def _bad(self, line: int, reason: str) -> Entry:
        where = f"{self.name}:{line}"
        return Entry(item_id(where, f"{os.path.abspath(self.location)}#{line}"), where, error=f"{where}: {reason}")


class _Lines:
    """The lines of a file as text, numbered and with their byte offsets, for csv.reader. The
    lines of the row being read are kept, so that a row the parser rejects can be given up and
    the lines after its first read again."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._offset = 0  #: where the next line from the file begins
        self._again: deque[tuple[str, int]] = deque()  #: (line, offset) to read again
        self._row: list[tuple[str, int]] = []
        self.number = 0  #: lines handed out so far
        self.row_start = 1  #: the line the current row starts on

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._again:
            line, offset = self._again.popleft()
        else:
            raw = next(self._handle)
            line, offset = decode(raw), self._offset
            self._offset += len(raw)
        self.number += 1
        self._row.append((line, offset))
        return line

    def next_line(self) -> list[int]:
        """[byte offset, lines before it] of the next line to be handed out."""
        offset = self._again[0][1] if self._again else self._offset
        return [offset, self.number]

    def seek(self, offset: int, number: int) -> None:
        self._handle.seek(offset)
        self._offset, self.number = offset, number
        self._again.clear()
        self._row = []

    def begin_row(self) -> None:
        self._row = []
        self.row_start = self.number + 1

    def retry_after_first(self) -> None:
        """Give up the current row's first line; the lines after it are read again."""
        self._again.extendleft(reversed(self._row[1:]))
        self.number = self.row_start
        self._row = []

    @property
    def row_lines(self) -> int:
        return len(self._row)


def _csv_problem(exc: csv.Error, lines: _Lines) -> str:
    text = str(exc)
    if "unexpected end of data" in text or "field larger than field limit" in text:
        return (
            f"a quoted field opens here and is never closed ({lines.row_lines} lines read looking for its end); "
            "the lines after it are read as rows of their own"
        )
    return f"cannot be read as CSV ({text})"


def _undecodable(values: list[str]) -> bool:
    """Whether text read with errors='surrogateescape' held bytes that are not UTF-8."""
    return any(safe_text(value) != value for value in values)
