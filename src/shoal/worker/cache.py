"""Stage results kept by content, for stages declared with ``cache=True``.

An input whose bytes a stage of the same version has already seen (in this job or any earlier
one, on any worker sharing the store) gets that stage's result back instead of running it again:
the URL list that repeats an image, the second job over a folder that gained ten files. The key
is a hash of the stage's version (the project's fingerprint, or the name given as ``cache="v2"``),
the stage's name, the input's bytes and its row (``meta``), so an edit to the code, a changed
file or another row never reads a stale answer. Only the stage's result record is kept, never
artifacts. The store is a folder (or any fsspec URL, say ``s3://bucket/cache``) holding one
small JSON file per entry, or Redis (``redis://``), where entries expire after 30 days unused.
A store that cannot be read or written is a miss, never an item's failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from shoal._json import dumps

if TYPE_CHECKING:
    from shoal.item import Item
    from shoal.pipeline import Stage

log = logging.getLogger(__name__)
REDIS_TTL_S = 30 * 86400
_CHUNK = 1 << 20


class ResultCache(Protocol):
    """Where cached stage results live."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, record: dict[str, Any]) -> None: ...


def open_cache(url: str) -> ResultCache:
    """The store at ``url``: ``redis://`` or ``rediss://``, else a folder or fsspec URL."""
    if url.startswith(("redis://", "rediss://")):
        return RedisCache(url)
    return FolderCache(url)


def content_digest(item: Item) -> bytes:
    """A hash of the input's bytes and its row: computed once per item, whatever stages use it."""
    digest = hashlib.sha256()
    if item.uri is not None:
        with item.open() as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
    digest.update(b"\0" + orjson.dumps(item.meta, option=orjson.OPT_SORT_KEYS))
    return digest.digest()


def cache_key(stage: Stage, fingerprint: str, content: bytes) -> str:
    """The entry of an input (its `content_digest`) for ``stage`` at this version of the code."""
    version = stage.cache if isinstance(stage.cache, str) else fingerprint
    return hashlib.sha256(f"{version}\0{stage.name}\0".encode() + content).hexdigest()


class FolderCache:
    """One JSON file per entry under a folder or fsspec URL, fanned out by the key's first bytes."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._local = None if "://" in url and not url.startswith("file://") else Path(url.removeprefix("file://"))

    def _path(self, key: str) -> str:
        return f"{self.url}/{key[:2]}/{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            if self._local is not None:
                data = (self._local / key[:2] / f"{key}.json").read_bytes()
            else:
                import fsspec

                with fsspec.open(self._path(key), "rb") as handle:
                    data = handle.read()
            found: dict[str, Any] = orjson.loads(data)
            return found
        except FileNotFoundError:
            return None
        except Exception as exc:  # an unreadable store is a miss, not a failed item
            log.warning("result cache %s: cannot read %s: %s", self.url, key, exc)
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        data = dumps(record).encode()
        try:
            if self._local is not None:
                folder = self._local / key[:2]
                folder.mkdir(parents=True, exist_ok=True)
                handle, part = tempfile.mkstemp(dir=folder, prefix=f".{key}.")
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(part, folder / f"{key}.json")  # whole or absent, whoever reads it meanwhile
            else:
                import fsspec

                fs, path = fsspec.core.url_to_fs(self._path(key))
                fs.pipe_file(path, data)
        except Exception as exc:
            log.warning("result cache %s: cannot write %s: %s", self.url, key, exc)


class RedisCache:
    """Entries as Redis strings that expire unless read again: a cluster's workers share them."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data = self.client.getex(f"shoal:cache:{key}", ex=REDIS_TTL_S)
        except Exception as exc:
            log.warning("result cache: cannot read %s from Redis: %s", key, exc)
            return None
        if data is None:
            return None
        found: dict[str, Any] = orjson.loads(data)
        return found

    def put(self, key: str, record: dict[str, Any]) -> None:
        try:
            self.client.set(f"shoal:cache:{key}", dumps(record), ex=REDIS_TTL_S)
        except Exception as exc:
            log.warning("result cache: cannot write %s to Redis: %s", key, exc)
