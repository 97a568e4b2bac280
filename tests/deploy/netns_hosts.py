"""Test hosts reached over SSH, for Ansible: one network namespace per host, with its own address.

Each host is an OpenSSH server (Debian's openssh-server) in a network namespace of its own,
joined to a bridge in the root namespace by a veth pair, with its own hostname (`unshare --uts`),
/etc/hosts and /etc/resolv.conf (bind-mounted in the namespace's own mount namespace, so fact
gathering does not wait on DNS). The filesystem is shared with this machine: give each host its
own prefix. Everything a host starts (sshd, supervisord, services) stays in its namespace and
is killed with it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SSHD = "/usr/sbin/sshd"
NEEDS = ("ip", "unshare", "setsid", "ssh", "ssh-keygen", SSHD)


def missing() -> list[str]:
    """What this machine lacks to make the hosts (root, and the tools in NEEDS)."""
    found = [] if os.geteuid() == 0 else ["root"]
    return found + [tool for tool in NEEDS if shutil.which(tool) is None]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60)


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    netns: str


class Hosts:
    """Hosts h1, h2, ... on a fresh /24 (10.23x.y.0); `with Hosts(folder, 2) as hosts:`."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        tag = secrets.token_hex(2)
        self.subnet = f"10.{232 + secrets.randbelow(8)}.{secrets.randbelow(250) + 2}"
        self.bridge = f"shbr{tag}"
        self.hosts = [Host(f"h{i}", f"{self.subnet}.{i + 1}", f"shoal-{tag}-h{i}") for i in range(1, count + 1)]
        self.key = folder / "id_ed25519"
        self.known_hosts = folder / "known_hosts"
        self._veths: list[str] = []
        self._daemons: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Hosts:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        if shutil.which("iptables"):  # bridged traffic may pass iptables' FORWARD chain (policy DROP under Docker)
            _run("iptables", "-I", "FORWARD", *self._forward_rule())
        Path("/run/sshd").mkdir(exist_ok=True)
        known = []
        for index, host in enumerate(self.hosts, start=1):
            known.append(f"{host.address} {self._start_host(index, host)}")
        self.known_hosts.write_text("".join(line + "\n" for line in known))
        for host in self.hosts:
            self._wait_ssh(host)

    def _start_host(self, index: int, host: Host) -> str:
        """Starts the host's sshd; returns its public host key."""
        outside, inside = f"{self.bridge}a{index}", f"{self.bridge}b{index}"
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        self._veths.append(outside)
        _run("ip", "link", "set", inside, "netns", host.netns)
        _run("ip", "link", "set", outside, "master", self.bridge, "up")
        _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", inside)
        _run("ip", "-n", host.netns, "link", "set", inside, "up")
        _run("ip", "-n", host.netns, "link", "set", "lo", "up")
        home = self.folder / host.name
        home.mkdir()
        others = "".join(f"{h.address} {h.name}\n" for h in self.hosts)
        (home / "hosts").write_text(f"127.0.0.1 localhost\n{others}")
        (home / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        host_key = home / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        shutil.copy(f"{self.key}.pub", home / "authorized_keys")
        (home / "sshd_config").write_text(
            f"ListenAddress {host.address}\nHostKey {host_key}\nPidFile {home}/sshd.pid\n"
            f"AuthorizedKeysFile {home}/authorized_keys\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n"
        )
        script = (
            f"hostname {host.name} && mount --bind {home}/hosts /etc/hosts"
            f" && mount --bind {home}/resolv.conf /etc/resolv.conf && exec {SSHD} -D -f {home}/sshd_config"
        )
        with (home / "sshd.log").open("w") as log:
            daemon = subprocess.Popen(
                ["setsid", "ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._daemons.append(daemon)
        kind, key, *_ = Path(f"{host_key}.pub").read_text().split()
        return f"{kind} {key}"

    def ssh(self, host: Host, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.ssh_options(), f"root@{host.address}", command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ssh_options(self) -> list[str]:
        return [
            "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        ]  # fmt: skip

    def _wait_ssh(self, host: Host) -> None:
        deadline = time.monotonic() + 30
        while (answer := self.ssh(host, "hostname")).stdout.strip() != host.name:
            log = (self.folder / host.name / "sshd.log").read_text()
            assert time.monotonic() < deadline, f"no ssh to {host}: {answer.stderr}\n{log}"
            time.sleep(0.3)

    def _forward_rule(self) -> list[str]:
        return ["-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    def close(self) -> None:
        """Kills everything in the namespaces, then removes them, the veths and the bridge."""
        for signal, pause in (("TERM", 3.0), ("KILL", 0.5)):
            for host in self.hosts:
                pids = subprocess.run(
                    ["ip", "netns", "pids", host.netns], capture_output=True, text=True
                ).stdout.split()
                if pids:
                    subprocess.run(["kill", f"-{signal}", *pids], capture_output=True)
            time.sleep(pause)
        for daemon in self._daemons:
            daemon.wait(timeout=10)
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        for veth in self._veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if shutil.which("iptables"):
            subprocess.run(["iptables", "-D", "FORWARD", *self._forward_rule()], capture_output=True)
