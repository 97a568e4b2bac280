"""CSV/TSV and JSONL rows: one item per row, its fields in ``item.meta``.

A row's file comes from its ``uri``, ``url``, ``path`` or ``file`` column when it has one; its id
from an ``id`` column, else from its content (so identical rows are one item). A row that cannot
be read becomes a failed item naming the line, and the rest go on.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shoal.sources import Entry
from shoal.sources._ids import item_id, user_id
from shoal.sources.files import local_path
from shoal.sources.uri_list import open_text

FILE_COLUMNS = ("uri", "url", "path", "file")


class Rows:
    """Rows of a CSV, TSV or JSONL file."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.name = location.rstrip("/").rsplit("/", 1)[-1]
        self.base = os.path.dirname(os.path.abspath(location)) if "://" not in location else None

    def __iter__(self) -> Iterator[Entry]:
        if self.location.lower().endswith((".jsonl", ".ndjson")):
            yield from self._jsonl()
        else:
            yield from self._csv()

    def _csv(self) -> Iterator[Entry]:
        delimiter = "\t" if self.location.lower().endswith(".tsv") else ","
        with open_text(self.location) as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            width = len(reader.fieldnames or ())
            for row in reader:
                line = reader.line_num
                fields = _field_count(row, width)
                if fields != width:
                    yield self._bad(line, f"row has {fields} fields, the header has {width}")
                else:
                    yield self._entry(line, dict(row))

    def _jsonl(self) -> Iterator[Entry]:
        with open_text(self.location) as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
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
            return Entry(user_id(row[keys["id"]]), label, uri, row)
        content = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
        name = uri.rstrip("/").rsplit("/", 1)[-1] if uri else "row"
        return Entry(item_id(name, content), label, uri, row)

    def _uri(self, value: str) -> str:
        path = local_path(value, Path(self.base)) if self.base else None
        return os.path.abspath(path) if path is not None else value

    def _bad(self, line: int, reason: str) -> Entry:
        where = f"{self.name}:{line}"
        return Entry(item_id(where, f"{os.path.abspath(self.location)}#{line}"), where, error=f"{where}: {reason}")


def _field_count(row: dict[Any, Any], width: int) -> int:
    """Fields a csv.DictReader row really had: extras land under None, missing ones are None."""
    extra = len(row.get(None) or ())
    missing = sum(1 for key, value in row.items() if key is not None and value is None)
    return width + extra - missing
