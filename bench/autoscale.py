"""Does the scaling signal match reality? KEDA's rule on real `shoal worker`s, driven by two signals.

    python bench/autoscale.py [--items 10000] [--quick] [--broker redis://127.0.0.1:6379/9]

A burst of --items CSV rows, each sleeping 50-500 ms (fixed by a hash of its id: idle work, so
many run at once on few cores), runs through `shoal run --engine celery` on the local Redis. Every
PERIOD_S a controller applies KEDA's rule, desired = clamp(ceil(metric / target), MIN_WORKERS,
MAX_WORKERS), by starting `shoal worker --concurrency 2` processes and stopping the newest with
SIGTERM (Celery's warm shutdown: running chunks finish, prefetched ones go back), as a
Deployment scaled by KEDA would, without KEDA's cooldown. The same burst, once per signal:

- shoal: `shoal_items_pending + shoal_items_in_flight` of the pipeline, scraped from `shoal run
  --metrics-port`, the chart's default trigger, with its default target of 8 items per worker;
- broker: LLEN of the job's Celery queue in Redis, what KEDA's Redis list scaler reads, with a
  target of 1 message per worker: the most eager one. The coordinator sends chunks only as
  workers have room, so the list holds about one message per worker thread it knows of whatever
  the backlog, and less while new workers take what is there: with any target of 2 or more
  (KEDA's default is 5) the pool stays at MIN_WORKERS.

Per signal: drain_s (from `shoal run` starting to the last item's end), peak_workers,
idle_worker_s (worker-seconds alive from the run's start until the pool is back at its minimum
after the drain, less the item-seconds run divided by the concurrency), lost_items and
duplicate_results (from results.jsonl), and besides: reruns (items whose stage ran more than
once: a chunk sent again), stops_mid_item (SIGTERMs that found their worker running an item).
Then the ratios of the shoal signal's drain_s and idle_worker_s over the broker signal's (the
target: at most 1, with lost 0 and duplicated 0). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# this folder holds celery.py: keep it off the import path, or `import celery` finds that file
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

MIN_WORKERS = 1  #: the coordinator fails at once when no worker answers: never scale to zero
MAX_WORKERS = 8
CONCURRENCY = 2  #: items a worker runs at once (the chart's default)
PERIOD_S = 2.0  #: seconds between two applications of the rule
ITEMS_PER_WORKER = 8.0  #: the shoal signal's target (the chart's itemsPerWorker)
MESSAGES_PER_WORKER = 1.0  #: the broker signal's target
SETTLE_S = 120.0  #: seconds the pool may take to return to its minimum after the run
PIPELINE = """
import os, time
import shoal

pipeline = shoal.Pipeline("burst")

@pipeline.stage()
def work(item):
    time.sleep(int(item.meta["ms"]) / 1000)
    with open({log!r}, "a") as log:  # one short line per run of the stage: reruns show
        log.write(item.id + "\\n")
    return {{"shoal_worker": os.getppid()}}  # the `shoal worker` whose process ran it
"""

Signal = Callable[[], float]


def item_ms(item_id: str) -> int:
    """50-500 ms, the same for an id on every run."""
    return 50 + int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:4], "big") % 451


def write_burst(root: Path, count: int) -> Path:
    burst = root / "burst.csv"
    with burst.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "ms"])
        writer.writerows((f"item-{i:06d}", item_ms(f"item-{i:06d}")) for i in range(count))
    return burst


def write_project(root: Path) -> Path:
    project = root / "burst"
    project.mkdir(parents=True)
    (project / "pipeline.py").write_text(PIPELINE.format(log=str(root / "executions.log")))
    return project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the signals ---------------------------------------------------------------------------------
def shoal_backlog(port: int, pipeline: str) -> Signal:
    """The chart's Prometheus query, on the coordinator's /metrics; 0 while it is not up (the
    query's `or vector(0)`)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"shoal_items_pending", "shoal_items_in_flight"}

    def read() -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        families = text_string_to_metric_families(text)
        samples = [s for f in families if f.name in wanted for s in f.samples]
        return sum(s.value for s in samples if s.labels.get("pipeline") == pipeline)

    return read


def broker_list_length(broker: str, queue: str) -> Signal:
    """LLEN of the Celery queue: the messages no worker has taken yet."""
    import redis

    def read() -> float:
        with redis.Redis.from_url(broker) as client:
            return float(client.llen(queue))

    return read


# --- the workers -------------------------------------------------------------------------------
@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    started: float  #: time.time() of its start
    stopped: float | None = None  #: when it was sent SIGTERM
    ended: float | None = None  #: when it was seen gone


class WorkerPool:
    """`shoal worker` processes of one project and queue, started and stopped one by one."""

    def __init__(self, project: Path, broker: str, queue: str, folder: Path, concurrency: int = CONCURRENCY):
        self.command = [sys.executable, "-m", "shoal", "worker", str(project), "--broker", broker, "--queue", queue]
        self.command += ["--concurrency", str(concurrency), "--log-dir", str(folder / "worker-logs")]
        self.folder, self.concurrency = folder, concurrency
        self.workers: list[Worker] = []

    @property
    def active(self) -> list[Worker]:
        """Workers not asked to stop: the replicas the controller counts."""
        return [w for w in self.workers if w.stopped is None]

    @property
    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.ended is None]

    def grow(self, count: int) -> None:
        for _ in range(count):
            log = self.folder / f"worker-{len(self.workers) + 1}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    self.command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
                )
            self.workers.append(Worker(process, log, time.time()))

    def shrink(self, count: int) -> None:
        """SIGTERM to the newest workers: running chunks finish, then they exit."""
        for worker in self.active[::-1][:count]:
            worker.process.send_signal(signal.SIGTERM)
            worker.stopped = time.time()

    def reap(self) -> None:
        for worker in self.alive:
            if worker.process.poll() is not None:
                worker.ended = time.time()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.active:
            while b" ready." not in worker.log.read_bytes():
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"shoal worker did not start: {worker.log.read_text(errors='replace')[-1500:]}")
                time.sleep(0.1)

    def close(self) -> None:
        self.shrink(len(self.active))
        for worker in self.alive:
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
        self.reap()


# --- the controller ----------------------------------------------------------------------------
@dataclass
class Autoscaler:
    """KEDA's rule, applied by hand: desired = clamp(ceil(metric / target), low, high)."""

    read: Signal  #: the metric, read once a period
    pool: WorkerPool
    target: float
    low: int = MIN_WORKERS
    high: int = MAX_WORKERS
    timeline: list[tuple[float, float, int]] = field(default_factory=list)  #: (time, metric, replicas)

    def desired(self, metric: float) -> int:
        return max(self.low, min(self.high, math.ceil(metric / self.target)))

    def step(self) -> None:
        self.pool.reap()
        metric = self.read()
        change = self.desired(metric) - len(self.pool.active)
        if change > 0:
            self.pool.grow(change)
        elif change < 0:
            self.pool.shrink(-change)
        self.timeline.append((time.time(), metric, len(self.pool.active)))

    @property
    def settled(self) -> bool:
        """Back at the minimum, and every stopped worker gone."""
        return len(self.pool.alive) == self.low == len(self.pool.active)


# --- one burst -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    signal: str
    items: int
    drain_s: float
    peak_workers: int
    idle_worker_s: float
    lost_items: int
    duplicate_results: int
    reruns: int
    scale_downs: int
    stops_mid_item: int
    final_workers: int
    settled: bool  #: back at the minimum, every stopped worker gone, before SETTLE_S ran out
    timeline: list[tuple[float, float, int]]

    def figures(self) -> dict[str, Any]:
        names = ("drain_s", "peak_workers", "idle_worker_s", "lost_items", "duplicate_results", "reruns")
        return {name: round(v, 1) if isinstance(v := getattr(self, name), float) else v for name in names} | {
            "scale_downs": self.scale_downs,
            "stops_mid_item": self.stops_mid_item,
        }


@dataclass
class Burst:
    """One run of a burst under one signal, in a folder of its own."""

    folder: Path
    burst: Path
    broker: str
    signal: str  #: "shoal" or "broker"
    low: int = MIN_WORKERS
    high: int = MAX_WORKERS
    period_s: float = PERIOD_S
    target: float | None = None  #: the signal's default target when None
    queue: str = field(default_factory=lambda: f"autoscale-{uuid.uuid4().hex[:8]}")

    def run(self) -> Outcome:
        self.folder.mkdir(parents=True)
        project = write_project(self.folder)
        pool = WorkerPool(project, self.broker, self.queue, self.folder)
        pool.grow(self.low)  # the coordinator wants a worker at start
        run: subprocess.Popen[bytes] | None = None
        try:
            pool.wait_ready()
            port = free_port()
            scaler = Autoscaler(self._signal(project, port), pool, self._target(), self.low, self.high)
            began = time.time()
            run = self._start_run(project, port)
            code = self._drive(scaler, run)
            ended, settled = time.time(), scaler.settled
        finally:
            if run is not None and run.poll() is None:  # the controller failed: leave nothing running
                run.kill()
                run.wait()
            pool.close()
            self._forget_queue(project)
        if code != 0:
            raise RuntimeError(f"shoal run exited {code}: {(self.folder / 'run.log').read_text()[-2000:]}")
        return self._outcome(scaler, began, ended, settled)

    def _target(self) -> float:
        return self.target or (ITEMS_PER_WORKER if self.signal == "shoal" else MESSAGES_PER_WORKER)

    def _signal(self, project: Path, port: int) -> Signal:
        if self.signal == "shoal":
            return shoal_backlog(port, "burst")
        from shoal.engines.celery.app import queue_name
        from shoal.project import load_project

        return broker_list_length(self.broker, queue_name(self.queue, load_project(project).fingerprint))

    def _start_run(self, project: Path, port: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "shoal", "run", str(project), "-i", str(self.burst), "--new"]
        command += ["--engine", "celery", "--broker", self.broker, "--queue", self.queue]
        command += ["--out", str(self.folder / "out"), "--metrics-port", str(port)]
        env = {**os.environ, "SHOAL_HOME": str(self.folder / "home")}
        with (self.folder / "run.log").open("wb") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def _drive(self, scaler: Autoscaler, run: subprocess.Popen[bytes]) -> int:
        """Apply the rule every period until the run ended and the pool is back at its minimum."""
        ended: float | None = None
        while True:
            tick = time.monotonic()
            scaler.step()
            if ended is None and run.poll() is not None:
                ended = tick
            if ended is not None and (scaler.settled or tick - ended > SETTLE_S):
                return run.wait()
            time.sleep(max(0.0, self.period_s - (time.monotonic() - tick)))

    def _forget_queue(self, project: Path) -> None:
        import redis

        from shoal.engines.celery.app import queue_name
        from shoal.project import load_project

        with redis.Redis.from_url(self.broker) as client:
            client.delete(queue_name(self.queue, load_project(project).fingerprint))

    def _outcome(self, scaler: Autoscaler, began: float, ended: float, settled: bool) -> Outcome:
        results = [json.loads(line) for line in (self.folder / "out" / "results.jsonl").read_text().splitlines()]
        items = len(self.burst.read_text().splitlines()) - 1  # less the header
        ids = {r["id"] for r in results}
        runs = Counter((self.folder / "executions.log").read_text().split())
        spans = [(r["result"]["shoal_worker"], _epoch(r["started"]), _epoch(r["finished"])) for r in results]
        drained = max((end for _, _, end in spans), default=began)
        workers = scaler.pool.workers
        return Outcome(
            signal=self.signal,
            items=items,
            drain_s=drained - began,
            peak_workers=max(replicas for _, _, replicas in scaler.timeline),
            idle_worker_s=_idle(workers, spans, began, max(drained, ended), scaler.pool.concurrency),
            lost_items=items - len(ids),
            duplicate_results=len(results) - len(ids),
            reruns=sum(1 for count in runs.values() if count > 1),
            scale_downs=sum(1 for w in workers if w.stopped is not None and w.stopped < ended),
            stops_mid_item=_stops_mid_item(workers, spans),
            final_workers=scaler.timeline[-1][2],
            settled=settled,
            timeline=[(t - began, metric, replicas) for t, metric, replicas in scaler.timeline],
        )


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _idle(workers: list[Worker], spans: list[tuple[int, float, float]], begin: float, end: float, slots: int) -> float:
    """Worker-seconds alive within [begin, end], less the item-seconds they ran over their slots."""
    alive = sum(max(0.0, min(w.ended or end, end) - max(w.started, begin)) for w in workers)
    return alive - sum(finish - start for _, start, finish in spans) / slots


def _stops_mid_item(workers: list[Worker], spans: list[tuple[int, float, float]]) -> int:
    """SIGTERMs sent to a worker while it was running an item (which still succeeded)."""
    running: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for pid, start, finish in spans:
        running[pid].append((start, finish))
    stops = [(w.process.pid, w.stopped) for w in workers if w.stopped is not None]
    return sum(1 for pid, at in stops if any(start < at < finish for start, finish in running[pid]))


# --- the bench -----------------------------------------------------------------------------------
def describe(outcome: Outcome) -> str:
    return (
        f"{outcome.signal:>6}: drain_s {outcome.drain_s:.1f}, peak_workers {outcome.peak_workers}, "
        f"idle_worker_s {outcome.idle_worker_s:.1f}, lost_items {outcome.lost_items}, "
        f"duplicate_results {outcome.duplicate_results} (reruns {outcome.reruns}, "
        f"scale-downs {outcome.scale_downs}, {outcome.stops_mid_item} of them mid-item)"
    )


def sketch(outcome: Outcome, every: float = 10.0) -> str:
    """The replicas and the metric every `every` seconds, for a reader to see the shape."""
    marks, next_at = [], 0.0
    for at, metric, replicas in outcome.timeline:
        if at >= next_at:
            marks.append(f"{at:.0f}s:{replicas}w/{metric:g}")
            next_at = at + every
    return f"{outcome.signal:>6} over time (replicas/metric): " + " ".join(marks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default=os.environ.get("SHOAL_BENCH_BROKER", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 items, at most 4 workers: a minute or two")
    args = parser.parse_args()
    items, high = (min(args.items, 1_000), 4) if args.quick else (args.items, MAX_WORKERS)
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="shoal-bench-autoscale-") as tmp:
        root = Path(tmp)
        burst = write_burst(root, items)
        print(f"{items} items of 50-500 ms, {MIN_WORKERS}-{high} workers of {CONCURRENCY}, every {PERIOD_S:g} s")
        for name in ("shoal", "broker"):
            outcomes[name] = Burst(root / name, burst, args.broker, name, high=high).run()
            print(describe(outcomes[name]), flush=True)
    for outcome in outcomes.values():
        print(sketch(outcome))
    shoal, broker = outcomes["shoal"], outcomes["broker"]
    drain_ratio, idle_ratio = shoal.drain_s / broker.drain_s, shoal.idle_worker_s / max(broker.idle_worker_s, 1e-9)
    print(f"shoal signal over broker length: drain_s {drain_ratio:.2f}, idle_worker_s {idle_ratio:.2f}")
    figures = {"items": items, "max_workers": high, **{n: o.figures() for n, o in outcomes.items()}}
    print(json.dumps({**figures, "drain_ratio": round(drain_ratio, 3), "idle_ratio": round(idle_ratio, 3)}))


if __name__ == "__main__":
    main()
