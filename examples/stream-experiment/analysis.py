"""The experiment's summary: shoal's interval table plus the job's own CPU, per-step figures,
Pearson and Spearman correlations, the energy line, and experiment.png.

`shoal metrics summarize` does the joining (feed log, results.jsonl, the Prometheus export);
this adds what only the experiment knows: the rate profile it asked for and the CPU of the job's
processes, read from /proc (the machine is shared, so its CPU is reported beside, not instead).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoal.feed import MB, Profile
from shoal.metrics import summarize as shoal_summary
from shoal.metrics.export import iter_rows

#: (x, y) column pairs whose correlation the summary reports
PAIRS = (
    ("input_mb_per_s", "e2e_p95_s"),
    ("input_mb_per_s", "job_cpu_cores"),
    ("input_mb_per_s", "machine_cpu_cores"),
    ("job_cpu_cores", "e2e_p95_s"),
    ("backlog_items", "e2e_p95_s"),
)
PROBE = "probe-"  #: item ids of the probe's frames, sent before the feed
LABELS = {
    "input_mb_per_s": "input MB/s",
    "e2e_p95_s": "p95 end-to-end latency (s)",
    "job_cpu_cores": "job CPU (cores)",
    "machine_cpu_cores": "machine CPU (cores, every process)",
    "backlog_items": "frames waiting or in flight",
}


@dataclass
class Experiment:
    """What was run: the inputs of the analysis."""

    profile: Profile
    step_s: float
    feed_log: Path
    run: Path
    metrics: Path | None
    cpu: list[tuple[float, float]]  #: (epoch s, cumulative CPU s of the job's processes)
    interval_s: float


def load(out: Path, interval_s: float) -> tuple[Experiment, dict[str, Any]]:
    """An experiment's output folder read back: what to analyse, and the facts it stated."""
    if not (out / "facts.json").exists():
        raise SystemExit(f"{out} holds no facts.json: it is not the folder of a finished experiment")
    facts = json.loads((out / "facts.json").read_text())
    with (out / "job_cpu.csv").open(newline="", encoding="utf-8") as handle:
        cpu = [(float(row["time"]), float(row["cpu_s"])) for row in csv.DictReader(handle)]
    profile = Profile.parse(facts["profile"]["mbps"], "MB")
    metrics = out / "metrics" if (out / "metrics").exists() else None
    step = facts["profile"]["step_s"]
    return Experiment(profile, step, out / "feed.csv", out / "run", metrics, cpu, interval_s), facts


def table(experiment: Experiment) -> tuple[list[str], np.ndarray[Any, Any]]:
    """shoal's per-interval table with job_cpu_cores and machine_cpu_cores added."""
    sources = shoal_summary.load(experiment.feed_log, experiment.run, experiment.metrics)
    names, rows = shoal_summary.summarize(sources, experiment.interval_s)
    starts = rows[:, 0]
    job = _cpu_cores(experiment.cpu, starts, starts + experiment.interval_s)
    machine = rows[:, names.index("cpu_busy_ratio")] * _cores(sources) if "cpu_busy_ratio" in names else None
    extra = [("job_cpu_cores", job), ("backlog_items", _backlog(experiment.metrics, starts, experiment.interval_s))]
    extra += [("machine_cpu_cores", machine)] if machine is not None else []
    return names + [n for n, _ in extra], np.column_stack([rows, *(v for _, v in extra)])


def _backlog(metrics: Path | None, starts: Any, interval: float) -> np.ndarray[Any, Any]:
    """Mean items waiting or in flight per interval (shoal_items_pending + shoal_items_in_flight):
    the queue that end-to-end latency follows."""
    total: dict[float, float] = {}
    if metrics is not None:
        for stamp, _, _, value in iter_rows(metrics, {"shoal_items_pending", "shoal_items_in_flight"}):
            total[stamp.timestamp()] = total.get(stamp.timestamp(), 0.0) + value
    if not total:
        return np.full(len(starts), math.nan)
    times, values = np.array(list(total.keys())), np.array(list(total.values()))
    index = np.searchsorted(starts, times, side="right") - 1
    keep = (index >= 0) & (times < starts[-1] + interval)
    sums = np.bincount(index[keep], weights=values[keep], minlength=len(starts))
    counts = np.bincount(index[keep], minlength=len(starts))
    return np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)


def _cores(sources: shoal_summary.Sources) -> int:
    """CPUs the node exporter reported (its cpu labels), else this machine's count."""
    cpus = {json.loads(labels).get("cpu") for metric, labels in sources.metrics if metric == "node_cpu_seconds_total"}
    return len(cpus - {None}) or (os.cpu_count() or 1)


def _cpu_cores(samples: list[tuple[float, float]], starts: Any, ends: Any) -> np.ndarray[Any, Any]:
    """Mean cores busy between each start and end, from cumulative CPU samples (NaN outside them)."""
    if len(samples) < 2:
        return np.full(len(starts), math.nan)
    times, used = np.array(samples).T
    inside = (starts >= times[0]) & (ends <= times[-1] + 1e-9)
    cores = (np.interp(ends, times, used) - np.interp(starts, times, used)) / (ends - starts)
    return np.where(inside, cores, math.nan)


def correlations(names: list[str], rows: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
    """Pearson and Spearman r of each pair, over the intervals where both are known."""
    found = []
    for x_name, y_name in PAIRS:
        if x_name not in names or y_name not in names:
            continue
        x, y = rows[:, names.index(x_name)], rows[:, names.index(y_name)]
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        why = _undefined(x_name, x, y_name, y)
        pair = {"x": x_name, "y": y_name, "intervals": len(x)}
        if why is None:
            found.append({**pair, "pearson": _r(x, y), "spearman": _r(_ranks(x), _ranks(y))})
        else:
            found.append({**pair, "pearson": None, "spearman": None, "undefined": why})
    return found


def _undefined(x_name: str, x: np.ndarray[Any, Any], y_name: str, y: np.ndarray[Any, Any]) -> str | None:
    """Why r cannot be computed, or None when it can."""
    if len(x) < 3:
        return f"{len(x)} intervals with both: too few"
    pairs = ((x_name, x), (y_name, y))
    constant = [f"{LABELS[name]} did not vary (always {v[0]:.3g})" for name, v in pairs if np.std(v) == 0]
    return " and ".join(constant) or None


def _r(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    return round(float(np.clip(np.corrcoef(x, y)[0, 1], -1, 1)), 4)


def _ranks(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Ranks with ties given their mean rank, as Spearman's r needs."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def steps(experiment: Experiment) -> list[dict[str, Any]]:
    """Per profile step: the rate asked and sent, latency of the items sent in it, CPU."""
    sent = _feed_log(experiment.feed_log)
    started = feed_start(experiment.profile, sent)
    finished = _finished(experiment.run)
    result = []
    for k, (mark, asked) in enumerate(experiment.profile.marks):
        end = experiment.profile.marks[k + 1][0] if k + 1 < len(experiment.profile.marks) else mark + experiment.step_s
        lo, hi = started + mark, started + end
        # Every send belongs to a step: one a little before the schedule's (median) start goes
        # to the first, one a little after its end (a late write) to the last.
        since = -math.inf if k == 0 else lo
        until = math.inf if k + 1 == len(experiment.profile.marks) else hi
        inside = [(t, b, i) for t, b, i in sent if since <= t < until]
        latency = [finished[i] - t for t, _, i in inside if i in finished]
        p50, p95 = np.percentile(latency, [50, 95]) if latency else (math.nan, math.nan)
        job = _cpu_cores(experiment.cpu, np.array([lo]), np.array([hi]))[0]
        result.append(
            {
                "start_s": mark,
                "asked_mb_per_s": asked,
                "sent_mb_per_s": round(sum(b for _, b, _ in inside) / MB / (hi - lo), 4),
                "items": len(inside),
                "done": len(latency),
                "e2e_p50_s": _round(p50),
                "e2e_p95_s": _round(p95),
                "job_cpu_cores": _round(job),
            }
        )
    return result


def feed_start(profile: Profile, sent: list[tuple[float, float, str]]) -> float:
    """When the feed's schedule began (epoch s): each send happened at start + profile.when(bytes
    sent so far), so the median of time - when() is the start, robust to a few late sends."""
    total, offsets = 0.0, []
    for t, size, _ in sent:
        total += size
        offsets.append(t - profile.when(total))
    return float(np.median(offsets))


def _feed_log(path: Path) -> list[tuple[float, float, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(_epoch(row["time"]), float(row["bytes"]), row["item"]) for row in csv.DictReader(handle)]


def _finished(run: Path) -> dict[str, float]:
    with (run / "results.jsonl").open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    return {r["id"]: _epoch(r["finished"]) for r in records}


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _round(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


# --- writing ---------------------------------------------------------------------------------
def write(out: Path, experiment: Experiment, facts: dict[str, Any]) -> dict[str, Any]:
    """summary.csv, summary.json, summary.txt and experiment.png in ``out``; the summary."""
    from figure import plot

    names, rows = table(experiment)
    found = correlations(names, rows)
    per_step = steps(experiment)
    _write_csv(out / "summary.csv", names, rows)
    stated = {k: v for k, v in facts.items() if k != "job_exit"}
    summary = {**stated, "job": _job(experiment.run, facts["job_exit"]), "interval_s": experiment.interval_s}
    summary |= {"intervals": len(rows), "steps": per_step, "correlations": found}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.txt").write_text("\n".join(_text(summary)) + "\n")
    started = feed_start(experiment.profile, _feed_log(experiment.feed_log))
    title = f"HOG people detector, {summary['workers']} workers: input profile around"
    title += f" {summary['profile']['capacity_mbps']:.2f} MB/s, the capacity probed before"
    plot(names, rows, found, experiment.profile, started, experiment.interval_s, title, out / "experiment.png")
    return summary


def _job(run: Path, code: int) -> dict[str, Any]:
    """Frames done and failed (the probe's apart), and what the detector found, from the run folder."""
    with (run / "results.jsonl").open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    with (run / "errors.csv").open(newline="", encoding="utf-8") as handle:
        failed = sum(1 for _ in csv.DictReader(handle))
    fed = [r for r in records if not r["id"].startswith(PROBE)]
    people = [r["result"]["people"] for r in fed]
    mean = round(sum(people) / len(people), 2) if people else None
    summary = {"run": str(run), "exit": code, "succeeded": len(fed), "probe": len(records) - len(fed)}
    return {**summary, "failed": failed, "people_mean": mean}


def _write_csv(path: Path, names: list[str], rows: np.ndarray[Any, Any]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            start = dt.datetime.fromtimestamp(row[0], dt.UTC).isoformat(timespec="milliseconds")
            writer.writerow([start, *("" if not math.isfinite(v) else f"{v:.6g}" for v in row[1:])])


def _capacity_source(profile: dict[str, Any]) -> str:
    if profile["probed_frames_per_s"] is None:
        return "given with --capacity-mbps"
    probed = f"{profile['probed_frames_per_s']} frames/s probed x {profile['frame_mb']:.3f} MB"
    if profile["capacity_mbps"] == profile["floor_mbps"]:
        return f"{probed}, raised to the floor where the slowest step still sends frames"
    return probed


def _text(summary: dict[str, Any]) -> list[str]:
    profile, job = summary["profile"], summary["job"]
    lines = [
        f"stream experiment: HOG people detector, {summary['workers']} workers, frames: {summary['frames']}",
        f"capacity {profile['capacity_mbps']:.2f} MB/s ({_capacity_source(profile)});"
        f" profile, MB/s from second: {profile['mbps']}",
        f"feed: {summary['feed']}",
        f"job: {job['succeeded']} fed frames done ({job['probe']} probe frames before), {job['failed']} failed,"
        f" {job['people_mean']} people found a frame on average",
        "",
        "step from  asked MB/s  sent MB/s  frames  e2e p50 s  e2e p95 s  job CPU cores",
    ]
    for s in summary["steps"]:
        cells = (s["e2e_p50_s"], s["e2e_p95_s"], s["job_cpu_cores"])
        p50, p95, cpu = ("   n/a" if v is None else f"{v:6.2f}" for v in cells)
        lines.append(
            f"{s['start_s']:8g}s  {s['asked_mb_per_s']:10.2f}  {s['sent_mb_per_s']:9.2f}  {s['items']:6d}"
            f"  {p50:>9}  {p95:>9}  {cpu:>13}"
        )
    lines += ["", f"correlations over intervals of {summary['interval_s']:g} s (Pearson, Spearman):"]
    for c in summary["correlations"]:
        r = f"n/a: {c['undefined']}" if c["pearson"] is None else f"{c['pearson']:+.2f}, {c['spearman']:+.2f}"
        lines.append(f"  {LABELS[c['x']]} ~ {LABELS[c['y']]}: {r} over {c['intervals']}")
    if not summary["node_exporter"]:
        lines.append("  machine CPU: not measured (prometheus-node-exporter is not installed)")
    return [*lines, "", summary["energy"]["line"]]
