"""The web service's speed, measured against a baseline in the same run.

    python bench/api.py [--jobs 200] [--clients 50] [--seconds 3] [--rounds 3]

(a) submit-to-done latency of one-item no-op jobs on the embedded engine: POST /api/v1/jobs, then
    follow GET /jobs/{id}/events to its ``end`` event; p50 and p99 over --jobs jobs, one at a time,
    after a few warm-up jobs (the server keeps its workers warm between jobs);
(b) GET /api/v1/jobs/{id} requests per second with --clients concurrent clients (aiohttp, keep-alive)
    against a bare FastAPI endpoint returning a constant, served by the same uvicorn settings in a
    process of its own, under the same load: the ceiling. Rounds of each alternate, and the median
    of --rounds is kept, so drifts in the machine's speed hit both alike.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

WARMUP_JOBS = 5


def ceiling_app() -> object:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/api/v1/jobs/{job_id}")
    async def constant(job_id: str) -> dict[str, str]:
        return {"id": job_id, "state": "succeeded"}

    return app


def serve_ceiling(port: int) -> None:
    import uvicorn

    uvicorn.run(ceiling_app(), host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not start")


def submit_latencies(url: str, root: Path, count: int) -> list[float]:
    files = root / "inputs"
    files.mkdir()
    took = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(count + WARMUP_JOBS):
            path = files / f"item-{i:05d}.txt"
            path.write_text(f"{i}\n")
            began = time.perf_counter()
            response = http.post("/api/v1/jobs", json={"pipeline": "noop", "inputs": [str(path)]})
            assert response.status_code == 202, response.text
            job = response.json()
            with http.stream("GET", f"/api/v1/jobs/{job['id']}/events") as response:
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "end":
                        state = json.loads(line[5:])["state"]
                        break
            elapsed = (time.perf_counter() - began) * 1000
            assert state == "succeeded", (job["id"], state)
            if i >= WARMUP_JOBS:
                took.append(elapsed)
            if elapsed > 200 and os.environ.get("BENCH_DEBUG"):
                print(f"slow job {i}: {elapsed:.0f} ms")
    return took


async def _load(url: str, clients: int, seconds: float) -> float:
    import aiohttp

    done = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.perf_counter() - began)


def rps(url: str, clients: int, seconds: float) -> float:
    return asyncio.run(_load(url, clients, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ceiling-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling_port:
        serve_ceiling(args.ceiling_port)
        return
    with tempfile.TemporaryDirectory(prefix="shoal-bench-api-") as tmp:
        root = Path(tmp)
        project = root / "noop"
        project.mkdir()
        (project / "pipeline.py").write_text(
            textwrap.dedent(
                """
                import shoal
                pipeline = shoal.Pipeline("noop")

                @pipeline.stage()
                def noop(item):
                    return {"ok": True}
                """
            )
        )
        port, ceiling_port = free_port(), free_port()
        env = {**os.environ, "SHOAL_HOME": str(root / "home")}
        server = subprocess.Popen(
            [sys.executable, "-m", "shoal", "serve", "--project", str(project), "--port", str(port), "-w", "1"],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
        )
        ceiling = subprocess.Popen([sys.executable, __file__, "--ceiling-port", str(ceiling_port)], cwd=root)
        try:
            url, ceiling_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ceiling_port}"
            wait_up(url + "/healthz", server)
            wait_up(ceiling_url + "/api/v1/jobs/x", ceiling)
            took = submit_latencies(url, root, args.jobs)
            p50, p99 = statistics.median(took), statistics.quantiles(took, n=100)[98]
            print(f"submit-to-done over {len(took)} one-item jobs: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            job_id = httpx.get(url + "/api/v1/jobs?size=1").json()["jobs"][0]["id"]
            status, bare = [], []
            for round_ in range(args.rounds):
                status.append(rps(f"{url}/api/v1/jobs/{job_id}", args.clients, args.seconds))
                bare.append(rps(f"{ceiling_url}/api/v1/jobs/{job_id}", args.clients, args.seconds))
                figures = f"GET /jobs/{{id}} {status[-1]:.0f} req/s, bare endpoint {bare[-1]:.0f} req/s"
                print(f"round {round_ + 1}: {figures}")
        finally:
            for process in (server, ceiling):
                process.terminate()
                process.wait(30)
    figures = {
        "submit_p50_ms": round(p50, 2),
        "submit_p99_ms": round(p99, 2),
        "status_rps": round(statistics.median(status), 1),
        "ceiling_rps": round(statistics.median(bare), 1),
    }
    figures["ratio_vs_ceiling"] = round(figures["status_rps"] / figures["ceiling_rps"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
