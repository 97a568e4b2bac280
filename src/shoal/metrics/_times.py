"""Times and durations as people type them: ISO 8601 with a zone, and Prometheus durations.

A time without a zone is refused rather than guessed: reading local time as UTC (or the reverse)
silently shifts a whole dataset by hours.
"""

from __future__ import annotations

import datetime as dt
import re

from shoal.errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-11-25T13:00:00+01:00``, ``...Z``, ``now``, or epoch seconds; returned in UTC."""
    value = text.strip()
    if value == "now":
        return now or dt.datetime.now(dt.UTC)
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"not a time: {text!r} (use ISO 8601 with a zone, e.g. 2026-11-25T13:00:00Z)") from None
    if moment.tzinfo is None:
        raise ConfigError(f"time {text!r} has no zone: add Z for UTC or an offset such as +01:00")
    return moment.astimezone(dt.UTC)


def parse_duration(text: str) -> float:
    """Seconds in ``5s``, ``1m30s``, ``250ms``, ``2h`` or a plain number of seconds; must be > 0."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ConfigError(f"not a duration: {text!r} (e.g. 5s, 1m30s, 250ms)") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0:
        raise ConfigError(f"duration {text!r} must be more than zero")
    return seconds


def iso(moment: dt.datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z, as shoal writes every time."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
