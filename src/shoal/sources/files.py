"""File sources: a folder, a glob, one file, or a listing of any fsspec URL."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shoal.errors import InputError
from shoal.sources import Entry
from shoal.sources._ids import item_id, safe_text

_GLOB_CHARS = set("*?[")


def local_path(value: str, base: Path) -> Path | None:
    """The local path an input names (``file://`` URLs included), or None for a remote URL."""
    if value.startswith("file://"):
        return Path(unquote(urlsplit(value).path))
    if "://" in value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def file_entry(path: Path, label: str) -> Entry:
    absolute = os.path.abspath(path)
    safe = safe_text(absolute)
    if safe != absolute:  # a name that is not UTF-8: kept, escaped, in a failed item of its own
        return Entry(item_id(safe_text(label), safe), safe, error=f"{safe}: the file name is not UTF-8 text")
    return Entry(item_id(label, absolute), absolute, absolute)


class Folder:
    """Every visible file under a folder, recursively, in sorted order."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not any(True for _ in self._walk()):
            raise InputError(f"input {root} is a folder with no files in it")

    def _walk(self) -> Iterator[Path]:
        for parent, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if _visible(d))
            for name in sorted(names):
                if _visible(name):
                    yield Path(parent, name)

    def __iter__(self) -> Iterator[Entry]:
        for path in self._walk():
            yield file_entry(path, path.relative_to(self.root).as_posix())


class Glob:
    """Files matching a pattern (``**`` recurses), in sorted order."""

    def __init__(self, pattern: Path) -> None:
        self.pattern = str(pattern)
        self.matches = sorted(p for p in glob.glob(self.pattern, recursive=True) if os.path.isfile(p))
        if not self.matches:
            raise InputError(f"no files match {self.pattern}")
        fixed = Path(self.pattern.split("*")[0].split("?")[0].split("[")[0])
        self.root = fixed if self.pattern.endswith("/") or fixed.is_dir() else fixed.parent

    def __iter__(self) -> Iterator[Entry]:
        for match in self.matches:
            yield file_entry(Path(match), os.path.relpath(match, self.root))


class SingleFile:
    """One local file given directly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[Entry]:
        yield file_entry(self.path, self.path.name)


class RemoteFiles:
    """A URL of any fsspec filesystem: a folder or glob is listed, anything else is one item."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __iter__(self) -> Iterator[Entry]:
        if self.url.startswith(("http://", "https://")):
            yield Entry(item_id(self.url.rsplit("/", 1)[-1], self.url), self.url, self.url)
            return
        for url, label in self._listing():
            yield Entry(item_id(label, url), url, url)

    def _listing(self) -> list[tuple[str, str]]:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(self.url)
            if has_glob(path):
                found = sorted(p for p in fs.glob(path) if fs.isfile(p))
                root = path.split("*")[0].rsplit("/", 1)[0]
            elif fs.isdir(path):
                found, root = sorted(fs.find(path)), path.rstrip("/")
            elif fs.isfile(path):
                found, root = [path], path.rsplit("/", 1)[0]
            else:
                raise InputError(f"input not found: {self.url}")
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot list {self.url}: {type(exc).__name__}: {exc}") from None
        protocol = self.url.split("://", 1)[0]
        return [(f"{protocol}://{p}", p[len(root) :].lstrip("/")) for p in found]
