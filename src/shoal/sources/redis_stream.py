"""A Redis stream as a job's input: ``redis+stream://host:6379/0/STREAM``.

Messages are read with a consumer group and acknowledged only once their items are in the
ledger, so a coordinator that dies loses nothing: on the next run it first takes back the
messages it had read but not acknowledged. A message is ``{"uri": ..., "id"?: ..., "meta"?:
JSON}``; a message with a ``close`` field ends the job once everything before it is done.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import urlsplit

from shoal.errors import InputError, MissingDependencyError
from shoal.sources import Entry
from shoal.sources.feeds import bad_line, stream_entry

SCHEME = "redis+stream"
CONSUMER = "coordinator"


def parse(url: str) -> tuple[str, str]:
    """(redis URL, stream name) from ``redis+stream://[user:pass@]host:port/db/STREAM``."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme != SCHEME or len(path) != 2 or not path[0].isdigit():
        raise InputError(f"{url!r} is not a Redis stream URL: use redis+stream://host:6379/DB/STREAM")
    return f"redis://{parts.netloc}/{path[0]}", path[1]


class RedisStreamFeed:
    """Messages of one stream for one job (its consumer group), as they arrive."""

    streaming = True

    def __init__(self, url: str, group: str, *, start: int = 0) -> None:
        try:
            import redis
        except ImportError:
            raise MissingDependencyError("redis", "celery") from None
        redis_url, self.stream = parse(url)
        self.url, self.group = url, group
        self.client = redis.Redis.from_url(redis_url, socket_timeout=30, health_check_interval=10)
        try:
            self.client.xgroup_create(self.stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except redis.ConnectionError as exc:
            raise InputError(f"cannot reach the Redis stream {url}: {exc}") from None
        self._next = start  #: the position the next message gets
        self._read: deque[tuple[int, bytes]] = deque()  #: (position, message id) not yet acknowledged
        self._close: tuple[int, bytes] | None = None  #: the close message, once read
        self._backlog: bytes | None = b"0"  #: first take back what an earlier run read but never acknowledged
        self._ended = False

    def read(self, limit: int, wait: float) -> list[Entry] | None:
        if self._ended:
            return None
        if self._backlog is not None:  # our pending messages, after the last one taken back
            messages = self._xread(self._backlog.decode(), limit, None)
            self._backlog = messages[-1][0] if messages else None
        else:
            messages = self._xread(">", limit, int(wait * 1000) or None)
        entries: list[Entry] = []
        for message_id, fields in messages:
            if b"close" in fields:  # not an item: no position of its own; acknowledged last
                self._close, self._ended = (self._next, message_id), True
                break
            self._read.append((self._next, message_id))
            self._next += 1
            entries.append(self._entry(message_id, fields))
        return entries if entries or not self._ended else None

    def _xread(self, start: str, limit: int, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply: Any = self.client.xreadgroup(self.group, CONSUMER, {self.stream: start}, count=limit, block=block_ms)
        messages = list(reply[0][1]) if reply else []
        return [(message_id, fields) for message_id, fields in messages if fields is not None]  # None: trimmed

    def _entry(self, message_id: bytes, fields: dict[bytes, bytes]) -> Entry:
        key = f"{self.stream}/{message_id.decode()}"
        try:
            text: dict[str, Any] = {k.decode(): v.decode() for k, v in fields.items()}
        except UnicodeDecodeError as exc:
            return bad_line(key, f"a field is not valid UTF-8 ({exc.reason} at byte {exc.start})")
        millis = int(message_id.split(b"-")[0])  # Redis stamps each message with its arrival
        return stream_entry(text, key, millis / 1000)

    def done(self, upto: int, ingested: bool) -> None:
        """Acknowledge the messages whose items the ledger now holds. The close message goes last,
        and only once the ledger records the job as wholly ingested: acknowledged earlier, a run
        killed in between would wait for an end that never comes again."""
        ids = []
        while self._read and self._read[0][0] < upto:
            ids.append(self._read.popleft()[1])
        if self._close is not None and ingested and not self._read and self._close[0] <= upto:
            ids.append(self._close[1])  # everything before it is recorded: the stream is finished
            self._close = None
        if ids:
            self.client.xack(self.stream, self.group, *ids)

    def checkpoint(self, upto: int) -> str | None:
        """The consumer group keeps the stream's place: no checkpoint."""
        return None

    def close(self) -> None:
        self.client.close()
