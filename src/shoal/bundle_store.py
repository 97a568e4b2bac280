"""Where code bundles wait for the workers: the Redis broker itself, or any fsspec URL.

Workers need only the broker, the cluster key and storage, so a bundle goes where all of them
already reach. On a Redis broker that is Redis: a bundle is kilobytes to a few megabytes, one
``SET`` per job start, and nothing else to run. The ledger is no place for it, since workers have
no ledger access. A RabbitMQ broker keeps no values, so there (or for large projects) bundles go
to a folder every worker mounts or an object store prefix: ``--bundles s3://bucket/bundles``.
"""

from __future__ import annotations

import uuid
from typing import Protocol
from urllib.parse import urlsplit

from shoal.errors import ConfigError

KEY_PREFIX = "shoal:bundle:"
KEEP_S = 30 * 24 * 3600  #: seconds an unused bundle stays in Redis; each job start renews it
HEAD = 64  #: leading bytes compared before a bundle is sent again (its signature is among them)


class BundleStore(Protocol):
    def put(self, fingerprint: str, blob: bytes) -> None: ...

    def get(self, fingerprint: str) -> bytes | None: ...

    def close(self) -> None: ...


class RedisBundles:
    """Bundles as Redis values, expiring KEEP_S after the last job that used them started."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)

    def put(self, fingerprint: str, blob: bytes) -> None:
        """Store it, or renew the same bundle already there; one signed with a key since rotated,
        or damaged, is replaced."""
        key = KEY_PREFIX + fingerprint
        if self._redis.getrange(key, 0, HEAD - 1) == blob[:HEAD]:
            self._redis.expire(key, KEEP_S)
        else:
            self._redis.set(key, blob, ex=KEEP_S)

    def get(self, fingerprint: str) -> bytes | None:
        blob = self._redis.get(KEY_PREFIX + fingerprint)
        return blob if isinstance(blob, bytes) else None

    def close(self) -> None:
        self._redis.close()


class FsspecBundles:
    """Bundles as files ``<fingerprint>.bundle`` under a folder or object store prefix."""

    def __init__(self, url: str) -> None:
        import fsspec

        self._fs, self._root = fsspec.core.url_to_fs(url)
        self._fs.makedirs(self._root, exist_ok=True)

    def _path(self, fingerprint: str) -> str:
        return f"{self._root.rstrip('/')}/{fingerprint}.bundle"

    def put(self, fingerprint: str, blob: bytes) -> None:
        path = self._path(fingerprint)
        if self._fs.exists(path) and self._fs.cat_file(path, start=0, end=HEAD) == blob[:HEAD]:
            return  # the same bundle (another key, or damage, makes other leading bytes)
        part = f"{path}.part-{uuid.uuid4().hex[:8]}"  # a reader sees the whole file or none
        self._fs.pipe_file(part, blob)
        self._fs.mv(part, path)

    def get(self, fingerprint: str) -> bytes | None:
        try:
            return bytes(self._fs.cat_file(self._path(fingerprint)))
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass


def open_store(broker_url: str, bundles_url: str | None) -> BundleStore:
    """The store named by ``bundles_url``, else the broker when it is Redis."""
    url = bundles_url or (broker_url if urlsplit(broker_url).scheme.startswith("redis") else None)
    if url is None:
        raise ConfigError(
            "a RabbitMQ broker keeps no code bundles: set --bundles URL (or SHOAL_BUNDLES_URL) to a folder every "
            "worker mounts or an object store prefix such as s3://bucket/shoal-bundles, the same on every machine"
        )
    return RedisBundles(url) if urlsplit(url).scheme.startswith("redis") else FsspecBundles(url)
