"""Summaries of a stream of numbers in bounded memory: exact count, sum, min and max (with the
ids of the items that had them), and percentiles from a uniform sample.

The sample is Algorithm R, done a page at a time with NumPy and a fixed seed, so the same job
gives the same report. Up to SIZE values it holds them all and every figure is exact; beyond,
percentiles come from SIZE values chosen uniformly (at a million items, p99 is then within a
few hundredths of a percentile of the truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

SIZE = 100_000  #: values kept for percentiles


class Ids(Protocol):
    """The item id of each value, by position (looked up only for the extremes)."""

    def __getitem__(self, index: int) -> str: ...


class Sample:
    """A stream of (value, item id) pairs summarised as they come."""

    def __init__(self, size: int = SIZE, seed: int = 0) -> None:
        self.size = size
        self.count = 0
        self.total = 0.0
        self.low: tuple[float, str] | None = None
        self.high: tuple[float, str] | None = None
        self._kept = np.empty(size)
        self._random = np.random.default_rng(seed)

    def add(self, values: Sequence[float] | np.ndarray[Any, Any], ids: Ids | None = None) -> None:
        found = np.asarray(values, dtype=float)
        if not found.size:
            return
        self.total += float(found.sum())
        if ids is not None:
            low, high = int(found.argmin()), int(found.argmax())
            if self.low is None or found[low] < self.low[0]:
                self.low = (float(found[low]), ids[low])
            if self.high is None or found[high] > self.high[0]:
                self.high = (float(found[high]), ids[high])
        room = max(0, self.size - self.count)
        self._kept[self.count : self.count + min(room, found.size)] = found[:room]
        rest = found[room:]
        if rest.size:  # Algorithm R: the n-th value replaces a random kept one with chance size/n
            seen = np.arange(self.count + room + 1, self.count + found.size + 1)
            slots = (self._random.random(rest.size) * seen).astype(np.int64)
            chosen = slots < self.size
            self._kept[slots[chosen]] = rest[chosen]
        self.count += found.size

    @property
    def exact(self) -> bool:
        """Whether every value is in the sample (so percentiles are exact)."""
        return self.count <= self.size

    def values(self) -> np.ndarray[Any, Any]:
        return self._kept[: min(self.count, self.size)]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values(), q))

    def summary(self) -> dict[str, Any]:
        """count, mean, min (and its item), max (and its item), p50, p95, p99."""
        if not self.count:
            return {"count": 0}
        found: dict[str, Any] = {"count": self.count, "mean": self.total / self.count}
        if self.low is not None and self.high is not None:
            found |= {"min": self.low[0], "min_item": self.low[1], "max": self.high[0], "max_item": self.high[1]}
        else:
            found |= {"min": float(self.values().min()), "max": float(self.values().max())}
        found |= {f"p{q}": self.percentile(q) for q in (50, 95, 99)}
        if not self.exact:
            found["sampled"] = self.size  # percentiles from this many values, chosen uniformly
        return found
