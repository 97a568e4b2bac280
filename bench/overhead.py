"""Overhead of the embedded engine, measured against a baseline in the same run.

    python bench/overhead.py [--items 20000] [--repeat 3]

(a) no-op items/s through `shoal.run` (ledger, ingest and worker start-up included), 2 workers,
    against multiprocessing.Pool.imap_unordered(chunksize=1) over the same items (pool start-up
    included); the median of --repeat interleaved rounds of each;
(b) CPU-bound efficiency: 400 items of about 20 ms of pure-Python work, serial time measured
    here divided by (workers x wall time of the shoal run); ProcessPoolExecutor's figure on the
    same work is printed beside it, as this machine's ceiling at the time;
(c) seconds from starting the `shoal run` command to the first item done;
(d) resident memory of an idle worker (project imported, setup done, waiting for work).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import shoal
from shoal.engines import WorkerReady
from shoal.engines.local import LocalEngine
from shoal.project import load_project

WORKERS = 2
CPU_ITEMS = 400
CPU_ITEM_S = 0.020


def burn(rounds: int) -> int:
    """Pure-Python work: the same loop the CPU-bound pipeline runs."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def noop(item: str) -> str:
    return item


def calibrate() -> int:
    """Loop rounds that take about CPU_ITEM_S seconds here."""
    rounds = 10_000
    while True:
        began = time.perf_counter()
        burn(rounds)
        took = time.perf_counter() - began
        if took > 0.05:
            return int(rounds * CPU_ITEM_S / took)
        rounds *= 2


def write_project(root: Path, name: str, body: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "pipeline.py").write_text(textwrap.dedent(body))
    return folder


def write_cpu_project(root: Path, rounds: int) -> Path:
    """A pipeline whose one stage runs burn(rounds): the same work as the serial baseline."""
    return write_project(
        root,
        "cpu",
        f"""
        import shoal
        pipeline = shoal.Pipeline("cpu")

        @pipeline.stage()
        def work(item):
            total = 0
            for i in range({rounds}):
                total = (total + i * i) % 1_000_003
            return {{"total": total}}
        """,
    )


def write_list(root: Path, name: str, count: int) -> Path:
    listing = root / f"{name}.txt"
    listing.write_text("".join(f"item-{i:06d}\n" for i in range(count)))
    return listing


def shoal_rate(project: Path, listing: Path, count: int, db: str) -> float:
    Path(db.removeprefix("sqlite:///")).unlink(missing_ok=True)  # every round starts from an empty ledger
    began = time.perf_counter()
    result = shoal.run(project, [str(listing)], workers=WORKERS, report=False, new=True, db_url=db)
    took = time.perf_counter() - began
    assert result.counts["succeeded"] == count, result.counts
    return count / took


def pool_rate(count: int) -> float:
    items = [f"item-{i:06d}" for i in range(count)]
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        for _ in pool.imap_unordered(noop, items, chunksize=1):
            pass
    return count / (time.perf_counter() - began)


def cpu_efficiency(root: Path, rounds: int, repeat: int) -> tuple[float, float]:
    """Median over ``repeat`` rounds of serial time / (workers x shoal wall time), each round
    measuring both back to back so drifts in machine speed hit both alike. The same figure for
    ProcessPoolExecutor is returned too: it is this machine's own ceiling at the time."""
    project = write_cpu_project(root, rounds)
    listing = write_list(root, "cpu", CPU_ITEMS)
    efficiencies, pool_efficiencies = [], []
    for round_ in range(repeat):
        began = time.perf_counter()
        for _ in range(CPU_ITEMS):
            burn(rounds)
        serial = time.perf_counter() - began
        db = root / f"cpu-{round_}.db"
        began = time.perf_counter()
        shoal.run(project, [str(listing)], workers=WORKERS, report=False, new=True, db_url=f"sqlite:///{db}")
        wall = time.perf_counter() - began
        efficiencies.append(serial / (WORKERS * wall))
        began = time.perf_counter()
        with ProcessPoolExecutor(WORKERS) as pool:
            list(pool.map(burn, [rounds] * CPU_ITEMS))
        pool_efficiencies.append(serial / (WORKERS * (time.perf_counter() - began)))
        print(
            f"cpu-bound round {round_ + 1}: serial {serial:.2f} s, shoal {wall:.2f} s on {WORKERS} workers: "
            f"efficiency {efficiencies[-1]:.3f} (ProcessPoolExecutor {pool_efficiencies[-1]:.3f})"
        )
    return statistics.median(efficiencies), statistics.median(pool_efficiencies)


def first_item_seconds(root: Path, project: Path) -> float:
    listing = write_list(root, "first", 1000)
    env = {**os.environ, "SHOAL_HOME": str(root / "first-home")}
    began = time.time()
    subprocess.run(
        [sys.executable, "-m", "shoal", "run", str(project), "-i", str(listing), "-w", str(WORKERS)],
        env=env,
        check=True,
        capture_output=True,
    )
    out = next((root / "first-home").glob("noop-*"))
    finished = [json.loads(line)["finished"] for line in (out / "results.jsonl").read_text().splitlines()]
    first = min(dt.datetime.fromisoformat(f.replace("Z", "+00:00")).timestamp() for f in finished)
    return first - began


def idle_worker_rss_mb(root: Path, project: Path) -> float:
    engine = LocalEngine(project, load_project(project).fingerprint, WORKERS)
    engine.start()
    ready = 0
    deadline = time.monotonic() + 30
    while ready < WORKERS and time.monotonic() < deadline:
        ready += sum(isinstance(e, WorkerReady) for e in engine.poll(0.1))
    time.sleep(0.5)
    sizes = [_rss_kb(pid) for pid in engine.pids()]
    engine.stop()
    return max(sizes) / 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        root = Path(tmp)
        import shoal.runner  # noqa: F401 - import once, before timing, as a long-lived process would

        noop_code = (
            'import shoal\npipeline = shoal.Pipeline("noop")\n\n@pipeline.stage()\ndef noop(item):\n    return {}\n'
        )
        project = write_project(root, "noop", noop_code)
        listing = write_list(root, "noop", args.items)
        shoal_rates, pool_rates = [], []
        for round_ in range(args.repeat):
            shoal_rates.append(shoal_rate(project, listing, args.items, f"sqlite:///{root / 'noop.db'}"))
            pool_rates.append(pool_rate(args.items))
            print(f"round {round_ + 1}: shoal {shoal_rates[-1]:,.0f} items/s, Pool {pool_rates[-1]:,.0f} items/s")
        noop_rate, pool = statistics.median(shoal_rates), statistics.median(pool_rates)
        efficiency, pool_efficiency = cpu_efficiency(root, calibrate(), args.repeat)
        first = first_item_seconds(root, project)
        rss = idle_worker_rss_mb(root, project)
    figures = {
        "noop_items_per_s": round(noop_rate),
        "pool_items_per_s": round(pool),
        "ratio_vs_pool": round(noop_rate / pool, 3),
        "cpu_efficiency": round(efficiency, 3),
        "cpu_efficiency_process_pool": round(pool_efficiency, 3),
        "first_item_s": round(first, 3),
        "worker_rss_mb": round(rss, 1),
    }
    print(f"no-op: shoal {noop_rate:,.0f} items/s vs Pool {pool:,.0f} items/s")
    print(f"first item after {first:.3f} s; idle worker {rss:.1f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
