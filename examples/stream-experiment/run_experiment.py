"""A load experiment on a streaming job, end to end: `make experiment`.

1. Frames of the opencv-doc pedestrian video (or generated ones), a Prometheus of its own
   (scraping the job's /metrics and the node exporter every second), and the streaming job:
   `shoal run examples/stream-experiment -i redis+stream://...` (HOG people detector).
2. A probe: a burst of frames sent at once and timed until done gives what the workers can
   take now (the machine is shared, so a single-process timing would overestimate it).
3. `shoal feed` at an MB/s profile that rises in steps to past that capacity and falls back,
   then closes the stream; the job finishes what it has and ends.
4. `shoal metrics export` of the window, joined by shoal's summarize with the feed log and the
   job's results, plus the job's own CPU (/proc) and RAPL energy where the kernel offers it:
   summary.json, summary.txt, summary.csv and experiment.png in the output folder.

Needs Redis on 127.0.0.1:6379 and Debian's prometheus (and prometheus-node-exporter for the
machine's CPU): `./scripts/test-services` as root installs and starts them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import analysis
import energy
import httpx
import monitor
from frames import make_frames
from prometheus_client.parser import text_string_to_metric_families

from shoal.feed import MB, Profile

HERE = Path(__file__).resolve().parent
#: the profile's steps, as multiples of the probed capacity: up past it (a backlog builds, unless the
#: machine got faster since the probe: it is shared), and back down to drain it
LEVELS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25)
EXPORTED = "shoal_.*|process_.*|node_cpu_seconds_total|node_memory_.*|up"
PROBE_PER_WORKER = 12  #: frames per worker in the probe's burst
MIN_FRAMES_PER_STEP = 2  #: fewer, and a step's rate and latency measure nothing


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for everything written [default: data/UTC-TIME here]")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the job")
    parser.add_argument("--step-seconds", type=float, default=12.0, help="seconds each rate of the profile lasts")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="rates as multiples of capacity")
    parser.add_argument("--capacity-mbps", type=float, help="take this capacity (MB/s) instead of the probe's")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds per row of the summary table")
    parser.add_argument("--frames", type=int, default=80, help="distinct frames to cycle through")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the job's input stream")
    parser.add_argument("--summarize", action="store_true", help="only summarize --out again (another --interval)")
    args = parser.parse_args(argv)
    if args.summarize and args.out is None:
        parser.error("--summarize needs --out: the folder of an experiment that ran")
    args.out = args.out or HERE / "data" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return args


BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"experiment [{time.monotonic() - BEGAN:5.1f} s]: {text}", file=sys.stderr, flush=True)


def shoal(*args: str) -> list[str]:
    """The shoal command of this Python, whatever PATH holds."""
    return [sys.executable, "-m", "shoal", *args]


def start_job(out: Path, stream: str, workers: int, metrics_port: int) -> subprocess.Popen[bytes]:
    command = shoal("run", str(HERE), "-i", stream, "-w", str(workers), "--out", str(out / "run"))
    command += ["--metrics-port", str(metrics_port), "--metrics-linger", "3"]
    with (out / "job.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(prometheus: monitor.Prometheus, targets: dict[str, str], workers: int, job: Any) -> None:
    """Every target scraped, and the job's workers alive, before the first frame is sent."""

    def alive() -> bool:
        if job.poll() is not None:
            raise RuntimeError(f"the job ended before the feed began (exit {job.returncode}); see job.log")
        return (prometheus.value("shoal_workers_alive") or 0) >= workers

    for name in targets:
        monitor.wait_until(lambda name=name: prometheus.value(f'up{{job="{name}"}}') == 1, 60, f"scrapes of {name}")
    monitor.wait_until(alive, 120, f"{workers} workers")


def probe(redis_url: str, stream: str, frames: list[Path], workers: int, metrics_url: str) -> float:
    """Frames/s the job does now: a burst sent at once, timed from when every worker has done one
    (so setup and start-up are left out) to the last, reading the job's /metrics every 50 ms."""
    import redis

    count = PROBE_PER_WORKER * workers
    client = redis.Redis.from_url(redis_url)
    name = stream.rsplit("/", 1)[1]
    with client.pipeline() as burst:
        for k in range(count):  # the message format `shoal feed` sends; the files already exist
            burst.xadd(name, {"uri": str(frames[k % len(frames)]), "id": f"{analysis.PROBE}{k:03d}"})
        burst.execute()
    client.close()
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + 120
    while (done := _succeeded(metrics_url)) < count:
        if first is None and done >= workers:
            first = (time.monotonic(), done)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the probe's {count} frames were not done in 120 s ({done} were)")
        time.sleep(0.05)
    if first is None:
        raise RuntimeError("the probe's frames were all done between two readings: send more (PROBE_PER_WORKER)")
    return (count - first[1]) / (time.monotonic() - first[0])


def _succeeded(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    families = text_string_to_metric_families(text)
    return sum(
        s.value
        for f in families
        for s in f.samples
        if s.name == "shoal_items_total" and s.labels.get("outcome") == "succeeded"
    )


def plan(args: argparse.Namespace, frames: list[Path], frames_per_s: float | None) -> tuple[Profile, dict[str, Any]]:
    """The MB/s profile and how it was chosen: capacity = probed frames/s x mean MB per frame, but
    never so low that the slowest step sends under MIN_FRAMES_PER_STEP (a probe taken while the
    shared machine is swamped can say 1 frame/s)."""
    frame_mb = sum(f.stat().st_size for f in frames) / len(frames) / MB
    levels = [float(v) for v in args.levels.split(",")]
    floor = MIN_FRAMES_PER_STEP * frame_mb / (min(levels) * args.step_seconds)
    capacity = args.capacity_mbps or max((frames_per_s or 0) * frame_mb, floor)
    marks = ",".join(f"{k * args.step_seconds:g}:{level * capacity:.4f}" for k, level in enumerate(levels))
    probed = round(frames_per_s, 2) if frames_per_s else None
    chosen = {"capacity_mbps": round(capacity, 4), "probed_frames_per_s": probed, "frame_mb": round(frame_mb, 4)}
    chosen["floor_mbps"] = None if args.capacity_mbps else round(floor, 4)
    return Profile.parse(marks, "MB"), {**chosen, "mbps": marks, "levels": levels, "step_s": args.step_seconds}


def feed(out: Path, stream: str, profile: Profile, duration: float, frames: Path) -> str:
    """`shoal feed` at the profile, closing the stream at the end; its report line."""
    marks = ",".join(f"{second:g}:{rate:g}" for second, rate in profile.marks)
    command = shoal("feed", stream, "--mbps", marks, "--duration", f"{duration:g}", "--input", str(frames))
    command += ["--store", str(out / "store"), "--log", str(out / "feed.csv"), "--close"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"shoal feed failed: {done.stderr.strip()}")
    return done.stderr.strip().removeprefix("shoal feed: ")


def export(url: str, start: float, end: float, out: Path) -> None:
    """`shoal metrics export` of the window, at the scrape interval."""
    first, last = (dt.datetime.fromtimestamp(t, dt.UTC).isoformat() for t in (start, end))
    command = shoal("metrics", "export", "--prometheus", url, "--start", first, "--end", last, "--step", "1s")
    subprocess.run([*command, "--match", EXPORTED, "--out", str(out)], check=True, capture_output=True)


@dataclass
class Watched:
    """The running pieces: the job, its CPU sampler, and the Prometheus scraping it."""

    job: subprocess.Popen[bytes]
    cpu: monitor.TreeCPU
    prometheus: monitor.Prometheus
    metrics_url: str  #: the job's own /metrics
    node_exporter: bool


def start(stack: contextlib.ExitStack, args: argparse.Namespace, out: Path, stream: str) -> Watched:
    """Node exporter, Prometheus, the job and its CPU sampler, each stopped when ``stack`` closes."""
    metrics_port, node_port = monitor.free_port(), monitor.free_port()
    exporter = monitor.node_exporter(node_port)
    stack.callback(monitor.stop, exporter)
    targets = {"shoal": f"127.0.0.1:{metrics_port}", **({"node": f"127.0.0.1:{node_port}"} if exporter else {})}
    say(f"starting Prometheus and the job ({args.workers} workers) on {stream}")
    prometheus = monitor.Prometheus(out / "prometheus", targets)
    stack.callback(prometheus.stop)
    job = start_job(out, stream, args.workers, metrics_port)
    stack.callback(monitor.stop, job)
    cpu = monitor.TreeCPU(job.pid)
    cpu.start()
    stack.callback(cpu.stop)
    wait_ready(prometheus, targets, args.workers, job)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    return Watched(job, cpu, prometheus, metrics_url, exporter is not None)


def run_profile(
    args: argparse.Namespace, out: Path, stream: str, frames: list[Path], watched: Watched
) -> dict[str, Any]:
    """Probe, feed the profile, wait for the job to end, export the window: what was done."""
    say("workers ready; probing their capacity")
    probed = None if args.capacity_mbps else probe(args.redis, stream, frames, args.workers, watched.metrics_url)
    profile, chosen = plan(args, frames, probed)
    duration = args.step_seconds * len(profile.marks)
    say(f"capacity {chosen['capacity_mbps']:.2f} MB/s; feeding for {duration:g} s at {chosen['mbps']}")
    before, start = energy.read(), time.time()
    said = feed(out, stream, profile, duration, out / "frames")
    say("fed; waiting for the job to finish")
    code = watched.job.wait(timeout=duration + 300)
    end, after = time.time(), energy.read()
    watched.cpu.stop()
    say(f"the job ended (exit {code}); exporting the metrics")
    export(watched.prometheus.url, start - 2, end, out / "metrics")
    return {"profile": chosen, "feed": said, "job_exit": code, "energy": energy.between(before, after, end - start)}


def experiment(args: argparse.Namespace, out: Path) -> None:
    """Run it all, leaving in ``out`` what the analysis reads (facts.json and job_cpu.csv besides
    the feed log, the run folder and the metrics export)."""
    _check_redis(args.redis)
    frames, source = make_frames(out / "frames", args.frames)
    say(f"frames: {source}")
    stream = f"{args.redis.replace('redis://', 'redis+stream://', 1)}/shoal-experiment-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        stack.callback(_forget_stream, args.redis, stream)
        watched = start(stack, args, out, stream)
        done = run_profile(args, out, stream, frames, watched)
    shutil.rmtree(out / "store", ignore_errors=True)  # copies of the frames, one per send
    shutil.rmtree(out / "prometheus" / "data", ignore_errors=True)  # exported already
    facts = {"workers": args.workers, "frames": source, **done, "node_exporter": watched.node_exporter}
    (out / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    with (out / "job_cpu.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("time", "cpu_s"), *watched.cpu.samples])


def _check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        start = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
        raise SystemExit(f"cannot reach Redis at {url} ({exc}): start it ({start}), or give --redis URL") from None
    finally:
        client.close()


def _forget_stream(redis_url: str, stream: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(stream.rsplit("/", 1)[1])
    client.close()


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    out = args.out.resolve()
    if not args.summarize:
        out.mkdir(parents=True, exist_ok=True)
        experiment(args, out)
    summary = analysis.write(out, *analysis.load(out, args.interval))
    print((out / "summary.txt").read_text(), end="")
    print(f"\nwritten to {out}: summary.txt, summary.json, summary.csv, experiment.png")
    return 0 if summary["job"]["failed"] == 0 and summary["job"]["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
