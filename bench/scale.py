"""Ten million items on one machine: `shoal run` over a list of N small files, against the same
run over the first 100,000 of them (the baseline, measured in the same session).

    python bench/scale.py [--items 10000000] [--baseline 100000] [--db URL] [--kind list|csv]

Each size runs the real command (`shoal run`, 2 workers, a stage that stats its file) on a fresh
ledger (SQLite in the work folder, or a fresh database on the PostgreSQL server --db names),
sampling the coordinator's resident memory as it goes. Then, on the large job: `shoal report`
rebuilds its report (timed), and `shoal serve` on the same ledger answers the job page, a page of
items deep in the job, its report and charts (timed). The files are hard links to a few real
files (a folder of 10,000 links each), made once and kept in --work for the next run.

Figures (the last line printed is one JSON object): items_per_s_100k and items_per_s_<N> (items
over the run's processing time, from the ledger), linearity (their ratio, target >= 0.8),
coordinator_rss_mb_100k and _<N> (peak resident memory of the `shoal run` process, report
included; ratio target <= 1.5), report_s_<N> (`shoal report` of the large job, target <= 60),
api_job_page_ms_<N> (p50 of GET /api/v1/jobs/{id}, target <= 100) and the other pages' times,
ledger_mb_per_m_items.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

WORKERS = 2
PER_FOLDER = 10_000
STAGE = """
import os
import shoal

pipeline = shoal.Pipeline("scale")

@pipeline.stage()
def size(item):
    return {"bytes": os.stat(item.uri).st_size if item.uri else len(item.meta["name"])}
"""


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


def make_list(work: Path, n: int) -> Path:
    """A list of n paths, each a hard link to a small file; made once, extended when asked for more."""
    listing = work / f"list-{n}.txt"
    if listing.exists():
        return listing
    files = work / "files"
    began = time.monotonic()
    with listing.open("w") as out:
        for i in range(n):
            folder = files / f"{i // PER_FOLDER:05d}"
            if i % PER_FOLDER == 0:
                folder.mkdir(parents=True, exist_ok=True)
                seed = folder / ".seed"
                if not seed.exists():
                    seed.write_text("hello\n")
            path = folder / f"f{i:08d}.txt"
            if not path.exists():
                os.link(folder / ".seed", path)
            out.write(f"{path}\n")
    print(f"made {n:,} files in {time.monotonic() - began:.0f} s", file=sys.stderr)
    return listing


def make_csv(work: Path, n: int) -> Path:
    table = work / f"rows-{n}.csv"
    if not table.exists():
        with table.open("w") as out:
            out.write("name,value\n")
            out.writelines(f"row-{i},{i * 7 % 1000}\n" for i in range(n))
    return table


class Database:
    """A fresh ledger for each run: a SQLite file in the work folder, or a new PostgreSQL database."""

    def __init__(self, work: Path, server: str | None) -> None:
        self.work, self.server = work, server
        self.made: list[str] = []

    def fresh(self, name: str) -> str:
        if self.server is None:
            path = self.work / f"ledger-{name}.db"
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        from sqlalchemy import create_engine, text

        database = f"shoal_scale_{name}_{uuid.uuid4().hex[:6]}"
        url = self.server.replace("postgresql://", "postgresql+psycopg://")
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        self.made.append(database)
        return self.server.rsplit("/", 1)[0] + f"/{database}"

    def drop(self) -> None:
        """Drop the PostgreSQL databases this run made (a SQLite ledger stays in --work)."""
        if self.server is None or not self.made:
            return
        from sqlalchemy import create_engine, text

        admin = create_engine(
            self.server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            for database in self.made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    def megabytes(self, url: str) -> float:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            return sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}")) / 2**20
        from sqlalchemy import create_engine, text

        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        engine.dispose()
        return float(size) / 2**20


def run(project: Path, source: Path, db: str, home: Path) -> dict[str, float]:
    """`shoal run` to the end; its processing rate (from the ledger) and its peak memory."""
    env = {**os.environ, "SHOAL_HOME": str(home), "SHOAL_DB_URL": db}
    command = [sys.executable, "-m", "shoal", "run", str(project), "--input", str(source), "--workers", str(WORKERS)]
    began = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _peak_kb(process.pid))
        time.sleep(0.5)
    stderr = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"shoal run failed ({process.returncode}): {stderr[-2000:]}")
    from shoal.store import Ledger

    ledger = Ledger(db)
    (job,) = ledger.list_jobs()
    (first,) = ledger.runs(job.id)
    ledger.close()
    processing = first["ended_at"] - first["started_at"]
    return {
        "job": job.id,  # type: ignore[dict-item]
        "items": job.succeeded,
        "items_per_s": job.succeeded / processing,
        "processing_s": processing,
        "wall_s": time.monotonic() - began,
        "rss_mb": peak / 1024,
    }


def _peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def report(job: str, db: str, home: Path) -> float:
    env = {**os.environ, "SHOAL_HOME": str(home), "SHOAL_DB_URL": db}
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "shoal", "report", job], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - began


def service(job: str, db: str, home: Path, items: int, project: Path) -> dict[str, float]:
    """`shoal serve` on the ledger: milliseconds of its answers about the large job."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SHOAL_HOME": str(home)}
    command = [sys.executable, "-m", "shoal", "serve", "--project", str(project), "--port", str(port), "--db", db]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("shoal serve did not start")
                time.sleep(0.2)

            def timed(path: str, params: dict[str, object] | None = None) -> float:
                began = time.perf_counter()
                answer = http.get(path, params=params)
                answer.raise_for_status()
                return (time.perf_counter() - began) * 1000

            def first_byte(path: str) -> float:
                """Milliseconds until a download starts (its body may take longer: it is large)."""
                began = time.perf_counter()
                with http.stream("GET", path) as answer:
                    answer.raise_for_status()
                    next(answer.iter_bytes(), None)
                    return (time.perf_counter() - began) * 1000

            base = f"/api/v1/jobs/{job}"
            first_view = timed(base)  # read from the ledger once, then remembered
            pages = [timed(base) for _ in range(200)]
            deep = [timed(f"{base}/items", {"after": items - 100, "size": 50}) for _ in range(20)]
            failed = [timed(f"{base}/items", {"status": "failed", "size": 50}) for _ in range(20)]
            return {
                "api_job_page_ms_first": first_view,
                "api_job_page_ms": statistics.median(pages),
                "api_job_page_ms_p99": sorted(pages)[int(len(pages) * 0.99) - 1],
                "api_items_deep_page_ms": statistics.median(deep),
                "api_failed_items_page_ms": statistics.median(failed),
                "api_report_ms": timed(f"{base}/report"),
                "api_runtime_png_ms": timed(f"{base}/report/runtime.png"),
                "api_throughput_png_ms": timed(f"{base}/report/throughput.png"),
                "api_results_csv_first_byte_ms": first_byte(f"{base}/results.csv"),
                "api_results_parquet_first_byte_ms": first_byte(f"{base}/results.parquet"),
                "api_jobs_list_ms": timed("/api/v1/jobs"),
            }
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--db", help="a PostgreSQL server URL (postgresql://user@host/postgres); SQLite if none")
    parser.add_argument("--kind", choices=("list", "csv"), default="list")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shoal-scale")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    project.mkdir(exist_ok=True)
    (project / "pipeline.py").write_text(STAGE)
    make = make_list if args.kind == "list" else make_csv
    large = make(work, args.items)
    small = work / f"{args.kind}-first-{args.baseline}{large.suffix}"
    if not small.exists():
        with large.open() as source, small.open("w") as out:
            out.writelines(line for _, line in zip(range(args.baseline + (args.kind == "csv")), source, strict=False))

    databases = Database(work, args.db)
    figures: dict[str, float | str] = {"items": args.items, "baseline": args.baseline, "kind": args.kind}
    figures["database"] = "postgresql" if args.db else "sqlite"
    results = {}
    for name, source, count in (("small", small, args.baseline), ("large", large, args.items)):
        db = databases.fresh(name)
        home = work / f"home-{name}"
        results[name] = {**run(project, source, db, home), "db": db, "home": home}
        found = results[name]
        rate, rss = found["items_per_s"], found["rss_mb"]
        print(f"{label(count)}: {rate:,.0f} items/s, peak RSS {rss:.0f} MB", file=sys.stderr)
    small_run, large_run = results["small"], results["large"]
    big = label(args.items)
    base = label(args.baseline)
    figures[f"items_per_s_{base}"] = round(small_run["items_per_s"], 1)
    figures[f"items_per_s_{big}"] = round(large_run["items_per_s"], 1)
    figures["linearity"] = round(large_run["items_per_s"] / small_run["items_per_s"], 3)
    figures[f"coordinator_rss_mb_{base}"] = round(small_run["rss_mb"], 1)
    figures[f"coordinator_rss_mb_{big}"] = round(large_run["rss_mb"], 1)
    figures["rss_ratio"] = round(large_run["rss_mb"] / small_run["rss_mb"], 3)
    figures[f"run_wall_s_{big}"] = round(large_run["wall_s"], 1)
    figures[f"report_s_{big}"] = round(report(large_run["job"], large_run["db"], large_run["home"]), 1)
    served = service(large_run["job"], large_run["db"], large_run["home"], args.items, project)
    figures |= {f"{key}_{big}": round(value, 2) for key, value in served.items()}
    figures["ledger_mb_per_m_items"] = round(databases.megabytes(large_run["db"]) / (args.items / 1e6), 1)
    databases.drop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
