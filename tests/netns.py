"""Hosts as network namespaces on one bridge: each with its own address and its own loopback,
so every message between them crosses a (virtual) network. Needs root (CAP_NET_ADMIN)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

SUBNET = "10.231.77"
HOSTS = {"broker": 1, "coordinator": 2, "worker1": 3, "worker2": 4}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Network:
    """Namespaces named after HOSTS on one bridge; `run`/`start` execute commands inside them.

    Traffic between the hosts crosses the bridge, which the firewall sees when bridge netfilter is
    on: a Docker engine on the machine sets FORWARD's policy to DROP, so the bridge is let through
    for as long as the test runs."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.bridge = f"shbr{self.tag}"
        self.processes: list[subprocess.Popen[bytes]] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        self._firewall("-I")
        for host, number in HOSTS.items():
            ns, outside, inside = self.ns(host), f"sh{self.tag}{number}a", f"sh{self.tag}{number}b"
            _ip("netns", "add", ns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def ns(self, host: str) -> str:
        return f"shoal-{self.tag}-{host}"

    @staticmethod
    def address(host: str) -> str:
        return f"{SUBNET}.{HOSTS[host]}"

    def start(self, host: str, command: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        with log.open("wb") as output:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), *command], stdout=output, stderr=subprocess.STDOUT, **kwargs
            )  # type: ignore[call-overload]
        self.processes.append(process)
        return process

    def start_redis(self, log: Path) -> str:
        """Redis on the broker host, without persistence; returns its URL once it is ready."""
        host = self.address("broker")
        command = ["redis-server", "--bind", host, "--port", "6379", "--save", "", "--appendonly", "no"]
        redis = self.start("broker", [*command, "--protected-mode", "no"], log)
        wait_for_line(log, b"Ready to accept connections", redis)
        return f"redis://{host}:6379/0"

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for host in HOSTS:
            subprocess.run(["ip", "netns", "del", self.ns(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self._firewall("-D")

    def _firewall(self, action: str) -> None:
        """Insert (-I) or delete (-D) the rule letting the bridge forward, where iptables exists."""
        if shutil.which("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            subprocess.run(["iptables", action, *rule], capture_output=True)


def wait_for_line(log: Path, text: bytes, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_bytes():
            return
        if process.poll() is not None:
            raise AssertionError(log.read_text(errors="replace")[-2000:])
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {log}")
