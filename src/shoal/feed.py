"""`shoal feed`: send items to a streaming job at a controlled rate, for load experiments.

The rate is items/s or MB/s, constant or piecewise (``0:1,60:5,120:2``: MB/s from those second
marks). Sends follow an absolute schedule (the bytes or items due by now), so short stalls are
caught up and the achieved rate does not drift. Every send is logged (UTC time, bytes, item id,
URI) to a CSV file that `shoal metrics summarize` joins with latencies and resource metrics.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from shoal.errors import ConfigError

MB = 1_000_000


@dataclass(frozen=True)
class Profile:
    """A rate over time: ``(second, rate)`` marks, each rate holding until the next mark."""

    marks: tuple[tuple[float, float], ...]
    unit: str  #: "items" or "MB"

    @classmethod
    def parse(cls, text: str, unit: str) -> Profile:
        """``"5"`` (constant) or ``"0:1,60:5,120:2"``."""
        try:
            marks = [(0.0, float(text))] if ":" not in text else [_mark(part) for part in text.split(",")]
        except ValueError:
            raise ConfigError(f"bad rate profile {text!r}: use a number, or marks like 0:1,60:5,120:2") from None
        marks.sort()
        if marks[0][0] != 0 or any(rate < 0 for _, rate in marks) or not any(rate > 0 for _, rate in marks):
            raise ConfigError(f"bad rate profile {text!r}: it must start at second 0, rates >= 0, and one above 0")
        return cls(tuple(marks), unit)

    def rate(self, second: float) -> float:
        index = bisect.bisect_right([m[0] for m in self.marks], second) - 1
        return self.marks[max(0, index)][1]

    def due(self, second: float) -> float:
        """Amount (items, or bytes) due by ``second``: the integral of the rate."""
        total, scale = 0.0, MB if self.unit == "MB" else 1
        for (start, rate), (end, _) in zip(self.marks, [*self.marks[1:], (float("inf"), 0.0)], strict=True):
            if second <= start:
                break
            total += rate * (min(second, end) - start)
        return total * scale

    def when(self, amount: float) -> float:
        """The second by which ``amount`` is due: when to send the next item."""
        low, high = 0.0, 1.0
        while self.due(high) < amount:
            low, high = high, high * 2
            if high > 1e9:
                return float("inf")
        for _ in range(60):  # bisection to well under a microsecond
            middle = (low + high) / 2
            low, high = (middle, high) if self.due(middle) < amount else (low, middle)
        return high


def _mark(part: str) -> tuple[float, float]:
    second, rate = part.split(":")
    return float(second), float(rate)


class Target(Protocol):
    """Where items go: a streaming job's input."""

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class RedisStreamTarget:
    """XADD to the stream a `shoal run -i redis+stream://...` job reads."""

    def __init__(self, url: str) -> None:
        import redis

        from shoal.sources.redis_stream import parse

        redis_url, self.stream = parse(url)
        self.client = redis.Redis.from_url(redis_url)

    def send(self, message: dict[str, Any]) -> None:
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in message.items()}
        self.client.xadd(self.stream, fields)  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.xadd(self.stream, {"close": "1"})
        self.client.close()


class HttpTarget:
    """POST to a streaming job of `shoal serve`: /api/v1/jobs/{id}/items."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import httpx

        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(headers=headers, timeout=30)

    def send(self, message: dict[str, Any]) -> None:
        self.client.post(self.url, json={"items": [message]}).raise_for_status()

    def close(self) -> None:
        self.client.post(self.url, json={"items": [], "close": True}).raise_for_status()
        self.client.close()


def open_target(url: str, token: str | None = None) -> Target:
    if url.startswith("redis+stream://"):
        return RedisStreamTarget(url)
    if url.startswith(("http://", "https://")):
        return HttpTarget(url, token)
    raise ConfigError(f"cannot feed {url!r}: give redis+stream://host:6379/DB/STREAM or a job's items URL")


def synthetic_frames(width: int, height: int, count: int = 16, seed: int = 3) -> list[bytes]:
    """Distinct PPM images (a raw format any image library reads) of a known size each."""
    rng = np.random.default_rng(seed)
    header = f"P6 {width} {height} 255\n".encode()
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frames = []
    for _ in range(count):
        noise = rng.normal(0, 40, (height, width, 3))
        frames.append(header + np.clip(ramp + noise, 0, 255).astype(np.uint8).tobytes())
    return frames


def files_of(folder: Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"{folder} holds no files to feed")
    return [(p.name, p.read_bytes()) for p in files]


@dataclass
class FeedReport:
    sent: int
    bytes: int
    seconds: float
    asked: float  #: the profile's amount over the duration (items or bytes)
    unit: str

    @property
    def achieved_ratio(self) -> float:
        done = self.bytes if self.unit == "MB" else self.sent
        return done / self.asked if self.asked else 0.0

    def describe(self) -> str:
        rate = self.bytes / MB / self.seconds if self.unit == "MB" else self.sent / self.seconds
        asked = self.asked / MB / self.seconds if self.unit == "MB" else self.asked / self.seconds
        unit = "MB/s" if self.unit == "MB" else "items/s"
        return (
            f"sent {self.sent} items, {self.bytes / MB:.1f} MB in {self.seconds:.1f} s: {rate:.3f} {unit} "
            f"against {asked:.3f} asked ({self.achieved_ratio:.1%})"
        )


def feed(
    target: Target,
    payloads: list[tuple[str, bytes]],
    profile: Profile,
    duration: float,
    store: Path,
    log: IO[str],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FeedReport:
    """Send items until ``duration`` seconds have passed, writing each payload to ``store`` first."""
    store.mkdir(parents=True, exist_ok=True)
    writer = csv.writer(log)
    writer.writerow(["time", "bytes", "item", "uri"])
    started, sent, sent_bytes = clock(), 0, 0
    for n, (name, payload) in enumerate(itertools.cycle(payloads)):
        amount = sent_bytes + len(payload) if profile.unit == "MB" else sent + 1
        at = profile.when(amount)
        if at > duration:
            break
        delay = started + at - clock()
        if delay > 0:
            sleep(delay)
        item = f"{n:08d}-{uuid.uuid4().hex[:6]}"
        path = store / f"{item}-{name}"
        path.write_bytes(payload)
        target.send({"uri": str(path), "id": item})
        sent, sent_bytes = sent + 1, sent_bytes + len(payload)
        writer.writerow([dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), len(payload), item, str(path)])
    rest = started + duration - clock()
    if rest > 0:  # the experiment lasts its duration, even when the last item went out early
        sleep(rest)
    seconds = clock() - started
    return FeedReport(sent, sent_bytes, seconds, profile.due(duration), profile.unit)
