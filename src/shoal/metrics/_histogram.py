"""A Prometheus histogram that takes observations a batch at a time, with integer weights.

prometheus_client's Histogram takes one value per call, under a lock. The coordinator learns
about items a report at a time (hundreds of cheap items at once), so this one is fed a report's
worth of (value, weight) pairs under one lock, and is exposed by a custom collector at scrape
time. Counts stay integers, so ``_count`` still equals the number of items observed.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: seconds; from sub-millisecond no-op items up to ten-minute model calls
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)


class _Cells:
    """One label set's bucket counts (not cumulative; the last is +Inf) and sum."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


class BatchHistogram(Collector):
    """A histogram family with fixed label names, fed with ``observe``; register it on a registry."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float] = DURATION_BUCKETS
    ) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._cells: dict[tuple[str, ...], _Cells] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], values: Iterable[tuple[float, int]]) -> None:
        """Add each value ``weight`` times to the label set ``labels``."""
        bounds = self.bounds
        with self._lock:
            cells = self._cells.get(labels)
            if cells is None:
                cells = self._cells[labels] = _Cells(len(bounds) + 1)
            counts, total = cells.counts, 0.0
            for value, weight in values:
                counts[bisect_left(bounds, value)] += weight
                total += value * weight
            cells.total += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(labels, list(c.counts), c.total) for labels, c in self._cells.items()]
        edges = [*(_format(b) for b in self.bounds), "+Inf"]
        for labels, counts, total in snapshot:
            running, buckets = 0, []
            for edge, count in zip(edges, counts, strict=True):
                running += count
                buckets.append((edge, float(running)))
            family.add_metric(list(labels), buckets, total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


def _format(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"
