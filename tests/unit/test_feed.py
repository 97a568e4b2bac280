"""The feed's schedule: rates, profiles, and sends timed against a fake clock."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import ConfigError
from shoal.feed import MB, Profile, feed, synthetic_frames


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Collect:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def close(self) -> None:
        """Nothing to close."""


def test_profiles_integrate_piecewise_rates() -> None:
    profile = Profile.parse("0:1,60:5,120:2", "MB")
    assert profile.rate(30) == 1
    assert profile.rate(60) == 5
    assert profile.rate(500) == 2
    assert profile.due(60) == 60 * MB
    assert profile.due(130) == (60 + 300 + 20) * MB
    assert profile.when(61 * MB) == pytest.approx(60.2)
    with pytest.raises(ConfigError, match="must start at second 0"):
        Profile.parse("10:1", "items")
    with pytest.raises(ConfigError, match="bad rate profile"):
        Profile.parse("fast", "items")


def test_feed_sends_on_an_absolute_schedule_and_logs_each_send(tmp_path: Path) -> None:
    clock, target, log = Clock(), Collect(), io.StringIO()
    frames = [("a.ppm", b"x" * 250_000), ("b.ppm", b"y" * 250_000)]
    report = feed(target, frames, Profile.parse("0:1,2:2", "MB"), 4.0, tmp_path, log, clock=clock, sleep=clock.sleep)
    assert report.bytes == 24 * 250_000  # 1 MB/s for 2 s, then 2 MB/s for 2 s
    assert report.achieved_ratio == pytest.approx(1.0)
    assert report.seconds == pytest.approx(4.0)
    rows = list(csv.DictReader(io.StringIO(log.getvalue())))
    assert len(rows) == len(target.sent) == 24
    assert [m["id"] for m in target.sent] == [r["item"] for r in rows]
    assert Path(target.sent[0]["uri"]).read_bytes() == frames[0][1]


def test_synthetic_frames_are_distinct_images_of_the_asked_size() -> None:
    frames = synthetic_frames(32, 24, count=3)
    assert len(set(frames)) == 3
    assert all(f.startswith(b"P6 32 24 255\n") and len(f) == len(b"P6 32 24 255\n") + 32 * 24 * 3 for f in frames)
