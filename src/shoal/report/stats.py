"""The numbers of a job: counts, item time distribution, wall time, speedup, efficiency.

Figures are built from one pass over the job's rows (report.scan) in bounded memory: exact
counts and sums, and distributions from a sample once a job has more items than the sample
holds (report.json says so with ``sampled``).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import RowMapping

from shoal.report._sample import Sample
from shoal.report.scan import Page, mask
from shoal.run_folder import utc
from shoal.store import JobRecord

#: a job shorter than this is mostly start-up: its speedup and efficiency are noted as such
SHORT_JOB_S = 5.0


class Figures:
    """What a report says about a job, gathered a page of rows at a time."""

    def __init__(self, job: JobRecord, runs: list[RowMapping]) -> None:
        self.job, self.runs = job, runs
        self.item_seconds = Sample(seed=1)  #: succeeded items: summed stage seconds
        self.latency = Sample(seed=2)  #: succeeded items of a stream: sent to done
        self.stages: dict[str, Sample] = {}
        self.cache_hits: Counter[str] = Counter()  #: succeeded items whose stage result came from its cache
        self.serial = 0.0  #: stage seconds of every item that ran
        self.retried = 0
        self.ran = 0
        self.first_done: float | None = None
        self.errors: Counter[str] = Counter()
        self._starts = [r["started_at"] for r in runs]
        self._last_done = [0.0] * len(runs)  #: per run, its last finished item (a killed run ends there)

    def add(self, page: Page) -> None:
        if page.failed.any():
            kinds = page.text("error_type").filter(pa.array(page.failed)).to_pylist()
            self.errors.update(str(kind) for kind in kinds)
        ran = ~np.isnan(page.started)
        if not ran.any():
            return
        self.ran += int(ran.sum())
        self.retried += int((page.attempts[ran] > 1).sum())
        took = page.took
        self.serial += float(took[ran].sum())
        self._times(page.finished[ran & ~np.isnan(page.finished)])
        done = np.flatnonzero(page.succeeded & ran)
        if not done.size:
            return
        self.item_seconds.add(took[done], _Ids(page.text("id"), done))
        for stage, values in page.seconds.items():
            self.stages.setdefault(stage, Sample(seed=3)).add(values[done], None)
        for stage, hits in page.cache_hits.items():
            self.cache_hits[stage] += int(hits[done].sum())
        if page.has_meta:  # a stream's items say when they were sent
            self.latency.add(_latencies(page, done), None)

    def _times(self, finished: np.ndarray[Any, Any]) -> None:
        if not finished.size:
            return
        low = float(finished.min())
        self.first_done = low if self.first_done is None else min(self.first_done, low)
        for i, start in enumerate(self._starts):
            end = self._starts[i + 1] if i + 1 < len(self._starts) else float("inf")
            inside = finished[(finished >= start) & (finished < end)] if len(self._starts) > 1 else finished
            if inside.size:
                self._last_done[i] = max(self._last_done[i], float(inside.max()))

    def run_spans(self) -> list[tuple[float, float]]:
        """(start, end) of each run; a killed run ends at its last finished item."""
        spans = []
        for i, run in enumerate(self.runs):
            end = run["ended_at"]
            if end is None:
                end = max(self._last_done[i], run["started_at"])
            spans.append((run["started_at"], end))
        return spans

    def summary(self) -> dict[str, Any]:
        job, counts, runs = self.job, self.job.counts, self.runs
        wall = sum(end - start for start, end in self.run_spans())
        workers = runs[-1]["workers"] if runs else 0
        speedup = self.serial / wall if wall > 0 else None
        finished = counts["succeeded"] + counts["failed"]
        return {
            "job": {
                "id": job.id,
                "pipeline": job.pipeline,
                "fingerprint": job.fingerprint,
                "state": job.state,
                "inputs": json.loads(job.inputs),
                "out": job.out,
                "created": utc(job.created_at),
                "finished": utc(job.finished_at),
            },
            "items": {"total": sum(counts.values()), **counts, "retried": self.retried, "duplicates": job.duplicates},
            "timing": {
                "wall_s": wall,
                "serial_s": self.serial,
                "speedup": speedup,
                "efficiency": speedup / workers if speedup is not None and workers else None,
                "workers": workers,
                "startup_s": runs[-1]["startup_s"] if runs else None,
                "first_item_s": self.first_done - runs[0]["started_at"] if self.first_done and runs else None,
                "items_per_s": finished / wall if wall > 0 else None,
            },
            "item_seconds": self.item_seconds.summary(),
            "latency_seconds": self.latency.summary(),
            "stages": {
                name: {"mean": s.total / s.count, "p95": s.percentile(95), "total": s.total}
                for name, s in self.stages.items()
                if s.count
            },
            "cache_hits": {stage: hits for stage, hits in self.cache_hits.items() if hits},
            "errors": dict(self.errors.most_common()),
            "runs": [
                {
                    "number": r["number"],
                    "started": utc(r["started_at"]),
                    "ended": utc(r["ended_at"]),
                    "outcome": r["outcome"] or "killed",
                    "engine": r["engine"],
                    "workers": r["workers"],
                    "startup_s": r["startup_s"],
                }
                for r in runs
            ],
        }


class _Ids:
    """Item ids of some rows, looked up only for the few (the fastest, the slowest) that are asked for."""

    def __init__(self, ids: pa.Array, chosen: np.ndarray[Any, Any]) -> None:
        self.ids, self.chosen = ids, chosen

    def __getitem__(self, index: int) -> str:
        return str(self.ids[int(self.chosen[index])].as_py())


def _latencies(page: Page, chosen: np.ndarray[Any, Any]) -> list[float]:
    """Sent-to-done seconds of a stream's items (their fields say when they were sent); only rows
    whose fields mention it are looked at one by one."""
    metas = page.text("meta").take(pa.array(chosen))
    sent = np.flatnonzero(mask(pc.match_substring(metas, "enqueued_at")))
    found = []
    for k in sent:
        enqueued = orjson.loads(metas[int(k)].as_py()).get("enqueued_at")
        finished = page.finished[chosen[k]]
        if isinstance(enqueued, int | float) and not np.isnan(finished):
            found.append(float(finished) - enqueued)
    return found


def performance_text(report: dict[str, Any]) -> str:
    """performance.txt: the figures a person checks first, aligned for reading."""
    job, items, timing, dist = report["job"], report["items"], report["timing"], report["item_seconds"]
    lines = [
        f"shoal performance report: job {job['id']} ({job['pipeline']}), state {job['state']}",
        "",
        "items",
        f"  total           {items['total']}",
        f"  succeeded       {items['succeeded']}",
        f"  failed          {items['failed']}",
        f"  retried         {items['retried']}",
        f"  pending         {items['pending']}",
        f"  duplicates      {items['duplicates']}  (repeated inputs, processed once)",
        "",
        "item time (sum of stage times per succeeded item)",
    ]
    if dist["count"]:
        lines += [
            f"  mean            {span(dist['mean'])}",
            f"  min             {span(dist['min'])}  ({dist['min_item']})",
            f"  max             {span(dist['max'])}  ({dist['max_item']})",
            f"  p50             {span(dist['p50'])}",
            f"  p95             {span(dist['p95'])}",
        ]
        if "sampled" in dist:
            lines.append(f"  (percentiles from a uniform sample of {dist['sampled']:,} of the {dist['count']:,} items)")
    else:
        lines.append("  no item ran")
    short = timing["wall_s"] < SHORT_JOB_S
    lines += [
        "",
        "time",
        f"  wall            {span(timing['wall_s'])}",
        f"  serial estimate {span(timing['serial_s'])}  (summed item time)",
        f"  speedup         {_num(timing['speedup'], 'x')}",
        f"  efficiency      {_num(timing['efficiency'])}  (speedup / workers)",
    ]
    if short:
        lines.append(f"  (a job under {SHORT_JOB_S:.0f} s is mostly start-up: its speedup and efficiency say little)")
    lines += [
        f"  workers         {timing['workers']}",
        f"  start-up        {span(timing['startup_s'])}  (run start to first worker ready)",
        f"  first item      {span(timing['first_item_s'])}  (run start to first item done)",
        f"  throughput      {_num(timing['items_per_s'], ' items/s')}",
    ]
    latency = report.get("latency_seconds", {})
    if latency.get("count"):
        lines += [
            "",
            "end-to-end latency of streamed items (sent to done)",
            f"  p50 {span(latency['p50'])}   p95 {span(latency['p95'])}   p99 {span(latency['p99'])}"
            f"   max {span(latency['max'])}",
        ]
    if report["stages"]:
        lines += ["", "stages (mean / p95 / total)"]
        width = max(len(n) for n in report["stages"])
        for name, s in report["stages"].items():
            lines.append(f"  {name:<{width}}  {span(s['mean'])} / {span(s['p95'])} / {span(s['total'])}")
    if report.get("cache_hits"):
        done = report["items"]["succeeded"]
        hits = ", ".join(f"{stage} {n} of {done}" for stage, n in report["cache_hits"].items())
        lines += ["", f"cache hits (results reused, not computed): {hits}"]
    if report["errors"]:
        width = max(len(kind) for kind in report["errors"])
        lines += ["", "failures by type"] + [f"  {kind:<{width}}  {n}" for kind, n in report["errors"].items()]
    return "\n".join(lines) + "\n"


def span(seconds: float | None) -> str:
    """A duration in the unit that shows it: 1.234 s, 12.3 ms, 85 µs."""
    if seconds is None:
        return "n/a"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.3f} s"
    value, unit = (seconds * 1000, "ms") if seconds >= 0.001 else (seconds * 1e6, "µs")
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"


def _num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.3f}{unit}"
