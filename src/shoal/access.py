"""What a job may read: the read policy a server gives its jobs, checked where files are opened.

A server that others can reach (or one started with --allow-path) lets its jobs read local files
only under some folders, and remote files only by a few protocols. A name is not a file, so the
rule is applied to what is really read: the resolved path of a local file, checked on the
descriptor the worker opened (no link, `..`, or change after the check gets around it), and for a
URL its protocol, where only plain protocols of remote stores count (a chain such as
``simplecache::file://`` or a protocol like ``local://`` that fsspec routes to local files is
refused). Entries read out of an input (the lines of a list, a table's file column) are inputs
too: each is checked as it is read, and again when a worker opens it.

Without a policy (`shoal run`, a server on loopback with no --allow-path) every path is allowed:
the user is on their own machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from shoal.errors import ReadRefusedError

#: protocols of remote stores a restricted job may read; anything else (file-like chains, local
#: aliases, in-memory or archive filesystems) is refused
REMOTE = ("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


@dataclass(frozen=True)
class ReadPolicy:
    """Local files only under ``roots`` (real paths), URLs only of ``protocols``."""

    roots: tuple[str, ...]
    protocols: tuple[str, ...] = REMOTE

    @classmethod
    def of(cls, roots: Sequence[str] | None) -> ReadPolicy | None:
        """The policy for these folders; None (no policy) when there are none to keep to."""
        if roots is None:
            return None
        return cls(tuple(os.path.realpath(root) for root in roots))

    def rule(self) -> str:
        return (
            f"this server reads local files only under {', '.join(self.roots)} and URLs only of "
            f"{', '.join(self.protocols)} (an operator widens it with --allow-path)"
        )

    def check(self, uri: str) -> None:
        """Refuse a path or URL the job may not read, by its name: what a list expands to is
        checked so as it is read (the real file is checked again when it is opened)."""
        local = local_of(uri)
        if local is None:
            self.remote(uri)
        elif not self.inside(os.path.normpath(local)):
            raise ReadRefusedError(f"{uri}: outside the folders this server reads; {self.rule()}")

    def remote(self, url: str) -> None:
        protocol = url.split("://", 1)[0].lower()
        if "::" in url or protocol not in self.protocols:
            raise ReadRefusedError(f"{url}: protocol {protocol!r} is not one this server reads; {self.rule()}")

    def real(self, path: str) -> str:
        """The real path of a local file, if it lies inside the folders; refused otherwise."""
        found = os.path.realpath(path)
        if not self.inside(found):
            raise self._outside(path, found)
        return found

    def opened(self, fd: int, path: str) -> None:
        """Refuse a file already opened (the descriptor's own path: whatever the name led to)."""
        try:
            found = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the resolved name, as close as can be had
            found = os.path.realpath(path)
        if not self.inside(found):
            raise self._outside(path, found)

    def _outside(self, path: str, found: str) -> ReadRefusedError:
        where = "is" if path == found else f"leads to {found}, which is"
        return ReadRefusedError(f"{path}: {where} outside the folders this server reads; {self.rule()}")

    def inside(self, path: str) -> bool:
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in self.roots)


def local_of(uri: str) -> str | None:
    """The local path a URI names (``file://`` included), or None for a URL of another protocol."""
    if uri.startswith("file://"):
        return unquote(urlsplit(uri).path)
    if "://" in uri or "::" in uri:
        return None
    return uri
