"""Where each worker's time went, for the charts, gathered a page of rows at a time.

A small job keeps every item's bar (and its retried attempts), so the Gantt chart shows each one.
A large one keeps, per worker, the seconds spent on succeeded and on failed items in each of BINS
equal slices of the job's time: bounded memory at any size, and a chart that stays readable
(it says that it is binned). Throughput comes from the same fixed bins in both cases.

A resumed or retried job runs again later: each item is counted to the run (of the ledger's runs)
it finished in, and which processes worked in which run is kept (a few names per run).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import RowMapping

from shoal.report.scan import Page, mask
from shoal.store import JobRecord

EXACT = 20_000  #: items up to which every bar is drawn
BINS = 2000  #: time slices of a large job
Bar = tuple[float, float, str]  #: start (seconds since the job started), width, outcome


class Timeline:
    """Items per worker over time: bars (small jobs) or busy seconds per time bin (large ones)."""

    def __init__(self, job: JobRecord, runs: list[RowMapping]) -> None:
        self.job_id = job.id
        self.exact = sum(job.counts.values()) <= EXACT
        self.t0 = float(runs[0]["started_at"]) if runs else job.created_at
        self.run_starts = [float(r["started_at"]) for r in runs]
        ends = [r["ended_at"] or r["started_at"] for r in runs]
        running = any(r["ended_at"] is None for r in runs)
        self.t_end = max([*ends, job.updated_at, time.time() if running else 0.0, self.t0 + 1.0])
        self.width = (self.t_end - self.t0) / BINS  #: seconds a bin spans
        self.bars: dict[str, list[Bar]] = defaultdict(list)
        self.busy: dict[str, np.ndarray[Any, Any]] = {}  #: worker -> [2, BINS] seconds: succeeded, failed
        self.done = np.zeros(BINS, dtype=np.int64)  #: items finished in each bin
        self.items = 0
        self.span = 1.0  #: seconds from the start to the last bar's end
        self.busy_s = 0.0  #: seconds items ran, all of them together
        self.in_runs: set[tuple[int, str]] = set()  #: (run index, worker) for each process that ran in each run

    def add(self, page: Page) -> None:
        worker = page.text("worker")
        ran = ~np.isnan(page.started) & ~np.isnan(page.finished) & mask(pc.not_equal(worker, ""))
        if not ran.any():
            return
        self.items += int(ran.sum())
        started, finished = page.started[ran], page.finished[ran]
        failed = ~page.succeeded[ran]
        self._fit(float(finished.max()))
        self.done += np.bincount(self._bins(finished), minlength=BINS)[:BINS]
        self.span = max(self.span, float(finished.max()) - self.t0)
        self.busy_s += float((finished - started).sum())
        encoded = pc.dictionary_encode(worker.filter(pa.array(ran)))
        codes, names = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
        pairs = np.unique(self._run_of(finished) * len(names) + codes)
        self.in_runs.update((int(pair) // len(names), names[int(pair) % len(names)]) for pair in pairs)
        if self.exact:
            items = zip(codes.tolist(), started.tolist(), finished.tolist(), failed.tolist(), strict=True)
            for code, s, f, bad in items:
                self.bars[names[code]].append((s - self.t0, f - s, "failed" if bad else "succeeded"))
            return
        for code, name in enumerate(names):
            mine = codes == code
            busy = self.busy.setdefault(name, np.zeros((2, BINS)))
            self._spread(busy, started[mine], finished[mine], failed[mine])

    def add_retries(self, events: list[RowMapping]) -> None:
        """Attempts that failed and were tried again (a small job's chart shows them too)."""
        if not self.exact:
            return
        for e in events:
            if e["kind"] == "retry" and e["worker"] and e["started_at"] and e["finished_at"]:
                bar = (e["started_at"] - self.t0, e["finished_at"] - e["started_at"], "retried attempt")
                self.bars[e["worker"]].append(bar)
                self.in_runs.add((int(self._run_of(np.array([e["finished_at"]]))[0]), e["worker"]))

    def finished_per_bin(self) -> np.ndarray[Any, Any]:
        """Items finished in each bin, from the start to the last one that finished."""
        return self.done[: min(BINS, int(self.span / self.width) + 1)]  # the last finished in bin span // width

    @property
    def runs(self) -> int:
        """Runs (of the ledger's) in which some item ran."""
        return len({run for run, _ in self.in_runs})

    @property
    def processes(self) -> int:
        """Worker processes (distinct ``host:pid`` names) that ran items, in any run."""
        return len({worker for _, worker in self.in_runs})

    def at_once(self) -> int:
        """The most processes that worked at the same moment, and at most as many as any one run had:
        the number of workers a reader has in mind. A large job counts the processes busy in each
        slice (a process replaced mid-slice counts twice there, hence the cap by run)."""
        per_run: dict[int, int] = defaultdict(int)
        for run, _ in self.in_runs:
            per_run[run] += 1
        if self.exact:
            steps = [(t, step) for bars in self.bars.values() for a, b in _union(bars) for t, step in ((a, 1), (b, -1))]
            busy = np.cumsum([step for _, step in sorted(steps)])  # an end sorts before a start at the same moment
        else:
            n = len(self.finished_per_bin())
            busy = np.sum([seconds[:, :n].sum(axis=0) > 0 for seconds in self.busy.values()], axis=0)
        return int(min(np.max(busy, initial=0), max(per_run.values(), default=0)))

    def idle(self) -> list[tuple[float, float]]:
        """Stretches (seconds since the start, on bin edges) in which no item ran or finished."""
        n = len(self.finished_per_bin())
        worked = self.done[:n] > 0
        if self.exact:
            spans = np.array([(s, s + w) for bars in self.bars.values() for s, w, _ in bars]).reshape(-1, 2)
            first, last = np.clip((spans / self.width).astype(np.int64), 0, n - 1).T
            steps = np.zeros(n + 1, np.int64)  #: +1 where a bar begins, -1 after the bin where it ends
            np.add.at(steps, first, 1)
            np.add.at(steps, last + 1, -1)
            worked |= np.cumsum(steps[:n]) > 0
        for busy in self.busy.values():
            worked |= busy[:, :n].sum(axis=0) > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[1], worked.astype(np.int8), [1]])))  # where idle begins, ends
        return [(float(a * self.width), float(b * self.width)) for a, b in edges.reshape(-1, 2)]

    def _run_of(self, moments: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The index of the run each moment falls in (the last that had started by then)."""
        found: np.ndarray[Any, Any] = np.clip(np.searchsorted(self.run_starts, moments, side="right") - 1, 0, None)
        return found

    def _fit(self, latest: float) -> None:
        """Widen the bins (joining neighbours, powers of two at a time) until ``latest`` fits:
        the first guess of the job's span, from its runs, may fall short (a clock ahead, a run
        still going)."""
        factor = 1
        while self.t0 + BINS * self.width * factor < latest:
            factor *= 2
        if factor == 1:
            return
        self.width *= factor
        self.done = np.append(self.done, np.zeros(BINS * (factor - 1), np.int64)).reshape(BINS, factor).sum(axis=1)
        for worker, busy in self.busy.items():
            wide = np.concatenate([busy, np.zeros((2, BINS * (factor - 1)))], axis=1)
            self.busy[worker] = wide.reshape(2, BINS, factor).sum(axis=2)

    def _bins(self, moments: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        found: np.ndarray[Any, Any] = np.clip(((moments - self.t0) / self.width).astype(np.int64), 0, BINS - 1)
        return found

    def _spread(self, busy: np.ndarray[Any, Any], started: Any, finished: Any, failed: Any) -> None:
        """Add each item's seconds to the bins it overlaps (most items fit in one bin)."""
        first, last = self._bins(started), self._bins(finished)
        one = first == last
        np.add.at(busy, (failed[one].astype(int), first[one]), (finished - started)[one])
        for s, f, bad, a, b in zip(started[~one], finished[~one], failed[~one], first[~one], last[~one], strict=True):
            for k in range(a, b + 1):
                low, high = self.t0 + k * self.width, self.t0 + (k + 1) * self.width
                busy[int(bad), k] += max(0.0, min(f, high) - max(s, low))


def _union(bars: list[Bar]) -> list[tuple[float, float]]:
    """One worker's bars joined where they overlap: (start, end) of each stretch it was busy."""
    found: list[tuple[float, float]] = []
    for start, width, _ in sorted(bars):
        if found and start <= found[-1][1]:
            found[-1] = (found[-1][0], max(found[-1][1], start + width))
        else:
            found.append((start, start + width))
    return found
