"""A text file of URIs, one a line, read lazily so a 10-million-line list never sits in memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from shoal.sources import Entry
from shoal.sources._ids import item_id, safe_text
from shoal.sources.files import refused

if TYPE_CHECKING:
    from shoal.access import ReadPolicy


def open_binary(location: str) -> IO[bytes]:
    """Open a local path or any fsspec URL for reading bytes (lines are decoded one by one, so a
    line that is not UTF-8 can be reported alone, and offsets are bytes a resume can seek to)."""
    if "://" not in location:
        return open(location, "rb")
    import fsspec

    return fsspec.open(location, "rb").open()  # type: ignore[no-any-return]


def decode(raw: bytes) -> str:
    """A line as text: bytes that are not UTF-8 stay as surrogate escapes (see _ids.safe_text)."""
    return raw.decode("utf-8", "surrogateescape")


class UriList:
    """Paths and URLs, one a line; blank lines and ``#`` comments are skipped.

    Relative paths are relative to the list's own folder, so a list travels with its data. Its
    position is the byte offset and number of the next line, so a resume seeks there.
    """

    def __init__(self, location: str, policy: ReadPolicy | None = None) -> None:
        self.location = location
        self.policy = policy  #: what the lines may name: each is an input of its own
        self.name = location.rstrip("/").rsplit("/", 1)[-1]
        self.base = os.path.dirname(os.path.abspath(location)) if "://" not in location else None
        self._offset = self._number = 0  #: where the next line begins, and lines read before it
        self._started = False

    def position(self) -> list[int] | None:
        return [self._offset, self._number] if self._started else None

    def __iter__(self) -> Iterator[Entry]:
        return self.resume(None)

    def resume(self, position: Any) -> Iterator[Entry]:
        self._offset, self._number = position or (0, 0)
        self._started = True
        with open_binary(self.location) as handle:
            if self._offset:
                handle.seek(self._offset)
            for raw in handle:
                self._offset += len(raw)
                self._number += 1
                line = decode(raw).strip()
                if not line or line[0] == "#":
                    continue
                if not line.isascii() and safe_text(line) != line:
                    where = f"{self.name}:{self._number}"
                    yield Entry(
                        item_id(where, f"{self.location}#{self._number}"), where, error=f"{where}: not UTF-8 text"
                    )
                    continue
                yield self._entry(line) if self.policy is None else refused(self._entry(line), self.policy)

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
