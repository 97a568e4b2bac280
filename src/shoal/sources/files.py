"""File sources: a folder, a glob, one file, or a listing of any fsspec URL.

Listings never sit in memory whole: a folder is walked lazily and its paths sorted in bounded
runs spilled to disk (sources._sorted), and an S3 prefix is read a page at a time, in the order S3
keeps keys. They resume by counting (sources.Counted).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from shoal.errors import InputError, ReadRefusedError
from shoal.sources import Counted, Entry
from shoal.sources._ids import item_id, safe_text
from shoal.sources._sorted import sorted_bounded

if TYPE_CHECKING:
    from shoal.access import ReadPolicy

_GLOB_CHARS = set("*?[")
PAGE = 1000  #: keys asked of an object store at a time


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


def file_entry(path: Path | str, label: str) -> Entry:
    absolute = os.path.abspath(path)
    safe = safe_text(absolute)
    if safe != absolute:  # a name that is not UTF-8: kept, escaped, in a failed item of its own
        return Entry(item_id(safe_text(label), safe), safe, error=f"{safe}: the file name is not UTF-8 text")
    return Entry(item_id(label, absolute), absolute, absolute)


def glob_root(pattern: str) -> str:
    """The folder a glob pattern starts from: its part before the first wildcard."""
    return pattern.split("*")[0].split("?")[0].split("[")[0] or "/"


def refused(entry: Entry, policy: ReadPolicy | None, *, real: bool = False) -> Entry:
    """The entry, or a failed one when the read policy does not allow what it names (by its real
    path with ``real``, where the file is known to exist; by its name otherwise)."""
    if policy is None or entry.uri is None or entry.error is not None:
        return entry
    try:
        if real and "://" not in entry.uri:
            policy.real(entry.uri)
        else:
            policy.check(entry.uri)
    except ReadRefusedError as exc:
        return Entry(entry.id, entry.input, error=str(exc))
    return entry


def walk(root: str, policy: ReadPolicy | None = None) -> Iterator[str]:
    """Paths of the visible files under ``root``, relative to it, lazily (a folder of millions is
    never listed into memory at once); hidden files and folders are skipped. With a read policy,
    a link that leads outside its folders is not followed (a link to a file is still listed, to
    fail as an item that says why)."""
    folders = [""]
    while folders:
        relative = folders.pop()
        try:
            listing = os.scandir(os.path.join(root, relative))
        except OSError:
            continue
        with listing:
            for found in listing:
                if not _visible(found.name):
                    continue
                path = f"{relative}/{found.name}" if relative else found.name
                if found.is_dir():
                    if policy is None or not found.is_symlink() or policy.inside(os.path.realpath(found.path)):
                        folders.append(path)
                    else:
                        yield path  # a link out of the folder: an item refused by the policy
                elif found.is_file() or (policy is not None and found.is_symlink()):
                    yield path


class Folder(Counted):
    """Every visible file under a folder, recursively, in the order of their paths."""

    slow = True  #: listed (and sorted) before its first entry: read in the background

    def __init__(self, root: Path, policy: ReadPolicy | None = None) -> None:
        self.root = root.resolve()
        self.policy = policy
        if next(walk(str(self.root), policy), None) is None:
            raise InputError(f"input {root} is a folder with no files in it")

    def _raw(self) -> Iterator[str]:
        return sorted_bounded(walk(str(self.root), self.policy))

    def _entry(self, relative: str) -> Entry:
        return refused(file_entry(f"{self.root}/{relative}", relative), self.policy, real=True)


class Glob(Counted):
    """Files matching a pattern (``**`` recurses), in sorted order."""

    slow = True

    def __init__(self, pattern: Path, policy: ReadPolicy | None = None) -> None:
        self.pattern = str(pattern)
        self.policy = policy
        if next(self._matches(), None) is None:
            raise InputError(f"no files match {self.pattern}")
        fixed = Path(self.pattern.split("*")[0].split("?")[0].split("[")[0])
        self.root = fixed if self.pattern.endswith("/") or fixed.is_dir() else fixed.parent

    def _matches(self) -> Iterator[str]:
        return (p for p in glob.iglob(self.pattern, recursive=True) if os.path.isfile(p))

    def _raw(self) -> Iterator[str]:
        return sorted_bounded(self._matches())

    def _entry(self, match: str) -> Entry:
        return refused(file_entry(match, os.path.relpath(match, self.root)), self.policy, real=True)


class SingleFile(Counted):
    """One local file given directly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _raw(self) -> Iterator[Path]:
        return iter([self.path])

    def _entry(self, path: Path) -> Entry:
        return file_entry(path, path.name)


class RemoteFiles(Counted):
    """A URL of any fsspec filesystem: a folder or glob is listed, anything else is one item. An
    S3 prefix is listed a page at a time; other filesystems list a folder in one go."""

    slow = True  #: a page of an object store's listing takes a round trip

    def __init__(self, url: str) -> None:
        self.url = url

    def _raw(self) -> Iterator[tuple[str, str]]:
        if self.url.startswith(("http://", "https://")):
            return iter([(self.url, self.url.rsplit("/", 1)[-1])])
        return self._listing()

    def _entry(self, raw: tuple[str, str]) -> Entry:
        url, label = raw
        return Entry(item_id(label, url), url, url)

    def _listing(self) -> Iterator[tuple[str, str]]:
        import fsspec

        protocol = self.url.split("://", 1)[0]
        try:
            fs, path = fsspec.core.url_to_fs(self.url)
            if not has_glob(path) and fs.isdir(path) and protocol in ("s3", "s3a"):
                root = path.rstrip("/")
                for key in _s3_keys(fs, root):
                    yield f"{protocol}://{key}", key[len(root) :].lstrip("/")
                return
            found, root = self._list(fs, path)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot list {self.url}: {type(exc).__name__}: {exc}") from None
        for p in sorted_bounded(found):
            yield f"{protocol}://{p}", p[len(root) :].lstrip("/")

    def _list(self, fs: Any, path: str) -> tuple[list[str], str]:
        if has_glob(path):
            return [p for p in fs.glob(path) if fs.isfile(p)], path.split("*")[0].rsplit("/", 1)[0]
        if fs.isdir(path):
            return list(fs.find(path)), path.rstrip("/")
        if fs.isfile(path):
            return [path], path.rsplit("/", 1)[0]
        raise InputError(f"input not found: {self.url}")


def _s3_keys(fs: Any, root: str) -> Iterator[str]:
    """Every key under an S3 prefix, a page at a time, in S3's own (sorted) order."""
    from fsspec.asyn import sync

    bucket, _, prefix = root.partition("/")
    pages = fs._iterdir(bucket, delimiter="", prefix=f"{prefix}/" if prefix else "")

    async def take() -> list[dict[str, Any]]:
        page = []
        async for info in pages:
            page.append(info)
            if len(page) >= PAGE:
                break
        return page

    while page := sync(fs.loop, take):
        for info in page:
            if info.get("type") == "file" and not info["name"].endswith("/"):
                yield info["name"]
