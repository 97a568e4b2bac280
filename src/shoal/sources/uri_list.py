"""A text file of URIs, one a line, read lazily so a 10-million-line list never sits in memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO
from urllib.parse import unquote, urlsplit

from shoal.sources import Entry
from shoal.sources._ids import item_id, safe_text


def open_text(location: str, errors: str = "strict") -> IO[str]:
    """Open a local path or any fsspec URL as UTF-8 text (``errors="surrogateescape"`` keeps bytes
    that are not UTF-8 as escapes, so one bad line can be reported instead of ending the read)."""
    if "://" not in location:
        return open(location, encoding="utf-8", errors=errors, newline="")
    import fsspec

    return fsspec.open(location, "rt", encoding="utf-8", errors=errors, newline="").open()  # type: ignore[no-any-return]


class UriList:
    """Paths and URLs, one a line; blank lines and ``#`` comments are skipped.

    Relative paths are relative to the list's own folder, so a list travels with its data.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self.base = os.path.dirname(os.path.abspath(location)) if "://" not in location else None

    def __iter__(self) -> Iterator[Entry]:
        name = self.location.rstrip("/").rsplit("/", 1)[-1]
        with open_text(self.location, errors="surrogateescape") as lines:
            for number, raw in enumerate(lines, start=1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if not line.isascii() and safe_text(line) != line:
                    where = f"{name}:{number}"
                    yield Entry(item_id(where, f"{self.location}#{number}"), where, error=f"{where}: not UTF-8 text")
                    continue
                yield self._entry(line)

    def _entry(self, line: str) -> Entry:
        if "://" in line:
            if not line.startswith("file://"):
                name = line.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
                return Entry(item_id(name, line), line, line)
            path = unquote(urlsplit(line).path)
        elif line[0] == "~":
            path = os.path.expanduser(line)
        else:
            path = line
        if path[0] != "/":
            path = f"{self.base or os.getcwd()}/{path}"
        if "/." in path or "//" in path:  # the common case, plain paths, stays string operations
            path = os.path.normpath(path)
        return Entry(item_id(path.rpartition("/")[2], path), path if "://" not in line else line, path)
