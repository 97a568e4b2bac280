"""What watches the experiment: a Prometheus of its own (scraping the job's /metrics and, when
installed, the node exporter for the machine's CPU), and a sampler of the job's own CPU.

The machine is shared, so its CPU says little about the job; the job's CPU is read from /proc
for the coordinator and every process below it (the workers), twice a second.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

INSTALL = "apt-get install -y prometheus prometheus-node-exporter (or run ./scripts/test-services as root)"
TICKS = os.sysconf("SC_CLK_TCK")  #: /proc/PID/stat CPU times are in these per second


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


class Prometheus:
    """A throw-away Prometheus scraping ``targets`` ({job: host:port}) every second."""

    def __init__(self, folder: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit(f"prometheus is not installed: {INSTALL}")
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
            for job, address in targets.items()
        )
        config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (folder / "prometheus.log").open("wb")
        command = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}"]
        command += [f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=10)
        wait_until(self._ready, 60, "prometheus")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited; see {self.log.name}")
        try:
            return self.client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def value(self, expr: str) -> float | None:
        """The sum of an instant query's values, or None when it returns nothing."""
        answer = self.client.get("/api/v1/query", params={"query": f"sum({expr})"}).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.client.close()
        stop(self.process)
        self.log.close()


def node_exporter(port: int) -> subprocess.Popen[bytes] | None:
    """The node exporter with only its CPU and memory collectors, or None when not installed."""
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        return None
    command = [binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults"]
    return subprocess.Popen([*command, "--collector.cpu", "--collector.meminfo"], stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class TreeCPU(threading.Thread):
    """CPU seconds used by a process and its descendants, sampled every ``period`` seconds.

    Each process's time is counted from the first sample that sees it, so a worker that starts
    mid-experiment adds what it used since it started, and one that ends keeps what it had.
    """

    def __init__(self, root: int, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.period = root, period
        self.samples: list[tuple[float, float]] = []  #: (epoch seconds, cumulative CPU seconds)
        self._last: dict[int, float] = {}
        self._total = 0.0
        self._first = True
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def sample(self) -> None:
        now, used = time.time(), _tree_cpu(self.root)
        if not self._first:
            self._total += sum(max(0.0, cpu - self._last.get(pid, 0.0)) for pid, cpu in used.items())
        self._last.update(used)
        self._first = False
        self.samples.append((now, self._total))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _tree_cpu(root: int) -> dict[int, float]:
    """{pid: user + system CPU seconds} of ``root`` and everything below it, read from /proc."""
    parents, cpu = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) "
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return {pid: cpu[pid] for pid in tree if pid in cpu}
