"""The numbers of a job: counts, item time distribution, wall time, speedup, efficiency."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import RowMapping

from shoal.outputs import utc
from shoal.store import Ledger

TIMING_COLUMNS = ("id", "status", "worker", "started_at", "finished_at", "seconds", "attempts", "meta")


@dataclass
class JobData:
    """What reports are computed from, read from the ledger once."""

    job: Any
    counts: dict[str, int]
    runs: list[RowMapping]
    items: list[RowMapping]  #: items that ran (have timings)
    events: list[RowMapping]
    failures: Counter[str]  #: final failures by error type
    duplicates: int  #: input entries that repeated an earlier item

    @classmethod
    def load(cls, ledger: Ledger, job_id: str) -> JobData:
        rows = [r for r in ledger.iter_items(job_id, columns=TIMING_COLUMNS) if r["started_at"] is not None]
        failures = Counter(r["error_type"] for r in ledger.iter_items(job_id, "failed", columns=("error_type",)))
        job = ledger.get_job(job_id)
        return cls(
            job,
            ledger.counts(job_id),
            ledger.runs(job_id),
            rows,
            ledger.events(job_id),
            failures,
            job.duplicates,
        )

    def run_spans(self) -> list[tuple[float, float]]:
        """(start, end) of each run; a killed run ends at its last finished item."""
        spans = []
        starts = [r["started_at"] for r in self.runs] + [float("inf")]
        for i, run in enumerate(self.runs):
            end = run["ended_at"]
            if end is None:
                inside = [r["finished_at"] for r in self.items if starts[i] <= (r["finished_at"] or 0) < starts[i + 1]]
                end = max(inside, default=run["started_at"])
            spans.append((run["started_at"], end))
        return spans


def summarize(data: JobData) -> dict[str, Any]:
    job, counts = data.job, data.counts
    spans = data.run_spans()
    wall = sum(end - start for start, end in spans)
    seconds = [(r["id"], json.loads(r["seconds"] or "{}"), r["status"]) for r in data.items]
    item_s = [(item_id, sum(s.values())) for item_id, s, _ in seconds]
    succeeded_s = [(item_id, sum(s.values())) for item_id, s, status in seconds if status == "succeeded"]
    serial = sum(s for _, s in item_s)
    workers = data.runs[-1]["workers"] if data.runs else 0
    finished = counts["succeeded"] + counts["failed"]
    speedup = serial / wall if wall > 0 else None
    first_done = min((r["finished_at"] for r in data.items), default=None)
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
        "items": {
            "total": sum(counts.values()),
            **counts,
            "retried": sum(1 for r in data.items if r["attempts"] > 1),
            "duplicates": data.duplicates,
        },
        "timing": {
            "wall_s": wall,
            "serial_s": serial,
            "speedup": speedup,
            "efficiency": speedup / workers if speedup is not None and workers else None,
            "workers": workers,
            "startup_s": data.runs[-1]["startup_s"] if data.runs else None,
            "first_item_s": first_done - data.runs[0]["started_at"] if first_done and data.runs else None,
            "items_per_s": finished / wall if wall > 0 else None,
        },
        "item_seconds": _distribution(succeeded_s),
        "latency_seconds": _distribution(_latencies(data.items)),
        "stages": _stages([(item_id, s) for item_id, s, _ in seconds]),
        "errors": dict(data.failures.most_common()),
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
            for r in data.runs
        ],
    }


def _latencies(rows: Sequence[RowMapping]) -> list[tuple[str, float]]:
    """Enqueue-to-done seconds of a stream's items (their meta says when they were sent)."""
    found = []
    for row in rows:
        if row["status"] == "succeeded" and row["meta"] and "enqueued_at" in row["meta"]:
            enqueued = json.loads(row["meta"]).get("enqueued_at")
            if isinstance(enqueued, int | float):
                found.append((row["id"], row["finished_at"] - enqueued))
    return found


def _distribution(item_s: Sequence[tuple[str, float]]) -> dict[str, Any]:
    if not item_s:
        return {"count": 0}
    values = np.array([s for _, s in item_s])
    low, high = int(values.argmin()), int(values.argmax())
    return {
        "count": len(values),
        "mean": float(values.mean()),
        "min": float(values[low]),
        "min_item": item_s[low][0],
        "max": float(values[high]),
        "max_item": item_s[high][0],
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
    }


def _stages(seconds: Sequence[tuple[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    by_stage: dict[str, list[float]] = {}
    for _, stage_seconds in seconds:
        for name, value in stage_seconds.items():
            by_stage.setdefault(name, []).append(value)
    return {
        name: {"mean": float(np.mean(v)), "p95": float(np.percentile(v, 95)), "total": float(np.sum(v))}
        for name, v in by_stage.items()
    }


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
        "item seconds (sum of stage times per succeeded item)",
    ]
    if dist["count"]:
        lines += [
            f"  mean            {dist['mean']:.4f}",
            f"  min             {dist['min']:.4f}  ({dist['min_item']})",
            f"  max             {dist['max']:.4f}  ({dist['max_item']})",
            f"  p50             {dist['p50']:.4f}",
            f"  p95             {dist['p95']:.4f}",
        ]
    else:
        lines.append("  no item ran")
    lines += [
        "",
        "time",
        f"  wall            {timing['wall_s']:.3f} s",
        f"  serial estimate {timing['serial_s']:.3f} s  (summed item time)",
        f"  speedup         {_num(timing['speedup'], 'x')}",
        f"  efficiency      {_num(timing['efficiency'])}  (speedup / workers)",
        f"  workers         {timing['workers']}",
        f"  start-up        {_num(timing['startup_s'], ' s')}  (run start to first worker ready)",
        f"  first item      {_num(timing['first_item_s'], ' s')}  (run start to first item done)",
        f"  throughput      {_num(timing['items_per_s'], ' items/s')}",
    ]
    latency = report.get("latency_seconds", {})
    if latency.get("count"):
        lines += [
            "",
            "end-to-end latency of streamed items (sent to done, seconds)",
            f"  p50 {latency['p50']:.3f}   p95 {latency['p95']:.3f}   p99 {latency['p99']:.3f}"
            f"   max {latency['max']:.3f}",
        ]
    if report["stages"]:
        lines += ["", "stages (mean / p95 / total seconds)"]
        width = max(len(n) for n in report["stages"])
        for name, s in report["stages"].items():
            lines.append(f"  {name:<{width}}  {s['mean']:.4f} / {s['p95']:.4f} / {s['total']:.2f}")
    if report["errors"]:
        lines += ["", "failures by type"] + [f"  {kind:<16}{n}" for kind, n in report["errors"].items()]
    return "\n".join(lines) + "\n"


def _num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.3f}{unit}"
