"""The Celery engine against raw Celery on the same Redis, in one run.

    python bench/celery.py [--broker redis://127.0.0.1:6379/9] [--items 20000] [--raw-items 5000] [--repeat 3]

(a) no-op items/s through `shoal run --engine celery` (ledger included), 2 `shoal worker`s of one
    thread each, against raw Celery: `apply_async` of one no-op task per item to 2 prefork worker
    processes, waiting for every result (the way the systems shoal replaces use Celery);
(b) CPU-bound efficiency on the Celery engine: 400 items of about 20 ms of pure-Python work,
    serial time measured here / (workers x wall time); the median of --repeat rounds, each timing
    the serial work and the run back to back so drifts in machine speed hit both alike.
Worker start-up is not timed: workers are long-lived in a cluster. The last line printed is one
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import shoal

# this file is named celery.py: keep its folder off the import path, or `import celery` finds it
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("bench_overhead", HERE / "overhead.py")
assert _spec is not None
assert _spec.loader is not None
overhead = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(overhead)
burn, calibrate, write_list, write_project = (
    overhead.burn,
    overhead.calibrate,
    overhead.write_list,
    overhead.write_project,
)
NOOP = 'import shoal\npipeline = shoal.Pipeline("noop")\n\n@pipeline.stage()\ndef noop(item):\n    return {}\n'

WORKERS = 2
CPU_ITEMS = 400
RAW_TASKS = """
from celery import Celery

app = Celery("raw", broker="{broker}", backend="{broker}")
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True)


@app.task(name="raw.noop")
def noop(item):
    return item
"""


def start(command: list[str], log: Path, env: dict[str, str], ready: bytes = b" ready.") -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while ready not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{command[2:4]} did not start: {log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.1)
    return process


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


def shoal_workers(root: Path, project: Path, broker: str, queue: str) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "shoal", "worker", str(project), "--broker", broker, "--queue", queue]
    return [
        start(
            [*command, "--concurrency", "1", "--log-dir", str(root / "logs")],
            root / f"{queue}-{n}.log",
            dict(os.environ),
        )
        for n in range(WORKERS)
    ]


def raw_celery_rate(root: Path, broker: str, count: int) -> float:
    (root / "raw_tasks.py").write_text(textwrap.dedent(RAW_TASKS.format(broker=broker)))
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "celery", "-A", "raw_tasks", "worker", "-P", "prefork", "-c", str(WORKERS)]
    worker = start([*command, "--without-mingle", "--without-gossip", "-l", "WARNING"], root / "raw.log", env, b"")
    sys.path.insert(0, str(root))
    import raw_tasks  # type: ignore[import-not-found]

    try:
        raw_tasks.noop.delay(0).get(timeout=60)  # the worker is up
        began = time.perf_counter()
        results = [raw_tasks.noop.apply_async(args=[i]) for i in range(count)]
        for result in results:
            result.get(timeout=300)
        return count / (time.perf_counter() - began)
    finally:
        stop([worker])


def shoal_rate(root: Path, broker: str, count: int) -> float:
    project = write_project(
        root,
        "noop",
        'import shoal\npipeline = shoal.Pipeline("noop")\n\n@pipeline.stage()\ndef noop(item):\n    return {}\n',
    )
    listing = write_list(root, "noop", count)
    workers = shoal_workers(root, project, broker, "bench-noop")
    try:
        began = time.perf_counter()
        result = shoal.run(project, [str(listing)], engine="celery", broker_url=broker, queue="bench-noop",
                           report=False, new=True, db_url=f"sqlite:///{root / 'noop.db'}")  # fmt: skip
        took = time.perf_counter() - began
    finally:
        stop(workers)
    assert result.counts["succeeded"] == count, result.counts
    return count / took


def cpu_efficiency(root: Path, broker: str, repeat: int) -> float:
    rounds = calibrate()
    project = overhead.write_cpu_project(root, rounds)
    listing = write_list(root, "cpu", CPU_ITEMS)
    workers = shoal_workers(root, project, broker, "bench-cpu")
    efficiencies = []
    try:
        for round_ in range(repeat):
            began = time.perf_counter()
            for _ in range(CPU_ITEMS):
                burn(rounds)
            serial = time.perf_counter() - began
            began = time.perf_counter()
            shoal.run(project, [str(listing)], engine="celery", broker_url=broker, queue="bench-cpu",
                      report=False, new=True, db_url=f"sqlite:///{root / f'cpu-{round_}.db'}")  # fmt: skip
            wall = time.perf_counter() - began
            efficiencies.append(serial / (WORKERS * wall))
            print(
                f"cpu-bound round {round_ + 1}: serial {serial:.2f} s, shoal on Celery {wall:.2f} s "
                f"with {WORKERS} workers: efficiency {efficiencies[-1]:.3f}"
            )
    finally:
        stop(workers)
    return statistics.median(efficiencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default=os.environ.get("SHOAL_BENCH_BROKER", "redis://127.0.0.1:6379/9"))
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--raw-items", type=int, default=5_000, help="raw Celery runs at ~1,000 tasks/s: fewer")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the CPU-bound run (the median counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-celery-") as tmp:
        root = Path(tmp)
        import shoal.runner  # noqa: F401 - imported once, as a long-lived coordinator would

        shoal_items = shoal_rate(root, args.broker, args.items)
        print(f"shoal on Celery: {shoal_items:,.0f} items/s ({args.items} no-op items)")
        raw = raw_celery_rate(root, args.broker, args.raw_items)
        print(f"raw Celery apply_async: {raw:,.0f} tasks/s ({args.raw_items} no-op tasks)")
        efficiency = cpu_efficiency(root, args.broker, args.repeat)
    figures = {
        "shoal_items_per_s": round(shoal_items),
        "raw_celery_items_per_s": round(raw),
        "ratio_vs_raw_celery": round(shoal_items / raw, 2),
        "cpu_efficiency": round(efficiency, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
