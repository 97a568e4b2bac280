"""Sorting more names than should sit in memory: sorted runs spilled to temporary files, merged.

A folder of ten million files is listed in sorted order with at most RUN names in memory at a
time (plus one per run while merging), so the order of entries stays deterministic, and so
resumable, whatever the size.
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

RUN = 200_000  #: names sorted in memory at a time


def sorted_bounded(names: Iterable[str], run: int = RUN) -> Iterator[str]:
    """``names`` in sorted order, holding at most ``run`` of them in memory while sorting."""
    runs: list[IO[str]] = []
    batch: list[str] = []
    try:
        for name in names:
            batch.append(name)
            if len(batch) >= run:
                runs.append(_spill(sorted(batch)))
                batch = []
        if not runs:
            yield from sorted(batch)
            return
        if batch:
            runs.append(_spill(sorted(batch)))
        del batch
        yield from heapq.merge(*(_read(handle) for handle in runs))
    finally:
        for handle in runs:
            handle.close()


def _spill(names: list[str]) -> IO[str]:
    """A sorted run on disk, one JSON string a line (names may hold newlines or odd bytes)."""
    handle = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="shoal-sort-")  # noqa: SIM115
    handle.writelines(json.dumps(name) + "\n" for name in names)
    handle.seek(0)
    return handle


def _read(handle: IO[str]) -> Iterator[str]:
    for line in handle:
        yield json.loads(line)
