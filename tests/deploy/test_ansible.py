"""deploy/ansible: the playbook run for real, over SSH, on two hosts in network namespaces.

h1 is the head (Redis broker, `shoal serve` with tokens, Prometheus) and a worker host; h2 is a
GPU-marked worker host with two workers. Both have a node exporter. systemd is not PID 1 here, so
the services run under supervisord (shoal_service_manager=supervisor) from the same command lines
as the systemd units the roles write, which `systemd-analyze verify` checks. The ledger is SQLite
on the head (shoal_ledger=sqlite): the PostgreSQL role needs Debian's cluster under systemd, and
Grafana is not in Debian, so neither runs here. After the playbook, a job uploaded to the head
runs on workers of both hosts; a second run changes nothing; ansible-lint is clean; the worker
VM's cloud-init user-data passes `cloud-init schema`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.netns_hosts import Hosts, missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # a playbook run over SSH takes minutes

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "deploy" / "ansible"
FINAL_STATES = {"completed", "completed_with_errors", "failed", "cancelled"}
HOST_PYTHON = "/usr/bin/python3"  #: the hosts' interpreter: Ansible's and the one shoal's venv is made from
IMAGES = 40  #: items in the end-to-end job: enough for every worker to take some


def tool(name: str) -> str | None:
    """A tool from the test virtualenv, SHOAL_ANSIBLE_BIN (a folder), or PATH."""
    folders = [str(Path(sys.executable).parent), os.environ.get("SHOAL_ANSIBLE_BIN", ""), os.environ["PATH"]]
    return shutil.which(name, path=os.pathsep.join(f for f in folders if f))


def lacking() -> list[str]:
    tools = (
        "ansible-playbook",
        "ansible-lint",
        "supervisord",
        "redis-server",
        "prometheus",
        "prometheus-node-exporter",
    )
    return missing() + [name for name in tools if tool(name) is None]


def test_ansible_lint_is_clean() -> None:
    lint = tool("ansible-lint")
    if lint is None:
        pytest.skip("ansible-lint is missing: pip install -e '.[test]'")
    found = subprocess.run(
        [lint, "--offline", "--nocolor", "-f", "pep8"], cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=300
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert "Profile 'production' was required, and it passed" in found.stdout + found.stderr


def test_the_example_inventory_holds_no_secret() -> None:
    text = "".join(p.read_text() for p in (ANSIBLE_DIR / "inventory").rglob("*") if p.is_file())
    assert not re.search(r"password:\s*['\"]?(?!\.\.\.)[^\s'\"{]", text), "a password in the example inventory"


def write_inventory(path: Path, hosts: Hosts, work: Path, supervisor_bin: Path) -> Path:
    h1, h2 = hosts.hosts
    settings = {
        "ansible_user": "root",
        "ansible_become": False,
        "ansible_python_interpreter": HOST_PYTHON,
        "ansible_ssh_private_key_file": str(hosts.key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={hosts.known_hosts} -o StrictHostKeyChecking=yes",
        "shoal_service_manager": "supervisor",
        "shoal_supervisord": str(supervisor_bin / "supervisord"),
        "shoal_supervisorctl": str(supervisor_bin / "supervisorctl"),
        "shoal_user": "root",
        "shoal_install_packages": False,
        "shoal_ledger": "sqlite",
        "shoal_data_dir": str(work / "data"),
        "shoal_wheelhouse": str(work / "wheels"),
        "shoal_wheelhouse_copy": False,
        "shoal_project_src": str(work / "faces"),
        "shoal_grafana": False,
        "shoal_worker_stop_timeout": 20,
        "shoal_worker_wheels": str(work / "wheels"),  # the hosts have no way out: bundles' requirements from here
        "shoal_node_exporter_bin": tool("prometheus-node-exporter"),
        "shoal_prometheus_bin": tool("prometheus"),
        "shoal_redis_server": tool("redis-server"),
    }
    host_vars = {
        h1.name: {"ansible_host": h1.address, "shoal_prefix": str(work / h1.name), "shoal_worker_concurrency": 2},
        h2.name: {
            "ansible_host": h2.address, "shoal_prefix": str(work / h2.name), "shoal_gpu": True,
            "shoal_worker_count": 2, "shoal_worker_concurrency": 1,
        },
    }  # fmt: skip
    only_h1 = {"hosts": {h1.name: None}}
    inventory = {
        "all": {
            "vars": settings,
            "hosts": host_vars,
            "children": {
                "head": only_h1,
                "broker": only_h1,
                "monitoring": only_h1,
                "ledger": {"hosts": {}},
                "workers": {"hosts": {h1.name: None, h2.name: None}},
            },
        }
    }
    path.write_text(yaml.safe_dump(inventory))
    return path


class Ansible:
    """ansible-playbook with deploy/ansible's configuration, the test inventory and fresh passwords."""

    def __init__(self, inventory: Path, work: Path) -> None:
        self.inventory = inventory
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "SHOAL_BROKER_PASSWORD": secrets.token_hex(12),
            "SHOAL_CLUSTER_KEY": secrets.token_hex(16),
        }

    def __call__(self, playbook: str, *args: str) -> str:
        done = subprocess.run(
            [str(tool("ansible-playbook")), "-i", str(self.inventory), playbook, *args],
            cwd=ANSIBLE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
        return done.stdout


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP, by host: {'h1': {'ok': 30, 'changed': 0, ...}}."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        found[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
    return found


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hosts, Ansible, Path]]:
    """Two hosts with the whole system deployed on them by the playbook."""
    if lacking():
        pytest.skip(f"needs {', '.join(lacking())} (as root: apt-get install openssh-server prometheus "
                    "prometheus-node-exporter redis-server; pip install -e '.[test]')")  # fmt: skip
    work = tmp_path_factory.mktemp("ansible")
    # The wheelhouse is made by the hosts' Python: dependency markers depend on its exact version.
    builder = work / "builder" / "bin" / "python"
    subprocess.run([HOST_PYTHON, "-m", "venv", str(builder.parents[1])], check=True, capture_output=True, timeout=120)
    wheels = subprocess.run(
        [str(builder), "-m", "pip", "wheel", "-q", "--wheel-dir", str(work / "wheels"), f"{ROOT}[celery,web]",
         "-r", str(ROOT / "examples" / "faces" / "requirements.txt")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert wheels.returncode == 0, wheels.stderr
    shutil.copytree(ROOT / "examples" / "faces", work / "faces", ignore=shutil.ignore_patterns("__pycache__", "data"))
    supervisor_bin = Path(str(tool("supervisord"))).parent
    with Hosts(work / "hosts", 2) as hosts:
        ansible = Ansible(write_inventory(work / "inventory.yml", hosts, work, supervisor_bin), work)
        started = time.monotonic()
        first = ansible("site.yml")
        print(f"first run: {time.monotonic() - started:.0f} s")
        assert all(counts["failed"] == 0 for counts in recap(first).values())
        yield hosts, ansible, work


def test_a_second_run_changes_nothing(fleet: tuple[Hosts, Ansible, Path]) -> None:
    _, ansible, _ = fleet
    counts = recap(ansible("site.yml"))
    assert set(counts) == {"h1", "h2"}
    assert {host: c["changed"] for host, c in counts.items()} == {"h1": 0, "h2": 0}


def test_a_job_runs_on_workers_of_both_hosts(fleet: tuple[Hosts, Ansible, Path], tmp_path: Path) -> None:
    hosts, _, work = fleet
    head = hosts.hosts[0]
    token = (work / "h1" / "etc" / "tokens" / "admin.token").read_text().strip()
    images = tmp_path / "images"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/faces/make_data.py"), "--count", str(IMAGES), "--out", str(images)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    files = sorted(images.iterdir())
    with httpx.Client(
        base_url=f"http://{head.address}:8000", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        assert http.get("/api/v1/jobs", headers={"Authorization": ""}).status_code == 401  # tokens are required
        upload = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in files]
        submitted = time.time()
        answer = http.post("/api/v1/jobs/upload", data={"pipeline": "faces", "options": json.dumps({"new": True})},
                           files=upload)  # fmt: skip
        assert answer.status_code == 202, answer.text
        job = wait_for_job(http, str(answer.json()["id"]))
        results = [json.loads(line) for line in http.get(f"/api/v1/jobs/{job['id']}/results.jsonl").text.splitlines()]
    assert job["counts"]["pending"] == 0, job
    assert job["counts"]["succeeded"] + job["counts"]["failed"] == len(files), job
    assert {r["worker"].rsplit(":", 1)[0] for r in results} == {"h1", "h2"}, "not every host's workers took items"
    first = min(datetime.fromisoformat(r["finished"].replace("Z", "+00:00")).timestamp() for r in results)
    print(f"upload to first result: {first - submitted:.1f} s")  # the closing note's figure, with the first run's


EDIT = """

@pipeline.stage()
def edited(item: shoal.Item) -> dict[str, Any]:
    return {"edited": True}
"""


def test_an_edited_pipeline_runs_on_the_fleet_with_nothing_copied(
    fleet: tuple[Hosts, Ansible, Path], tmp_path: Path
) -> None:
    """From another machine (this one): an edited copy of the project, run against the fleet's broker.
    Its workers hold no project: they fetch the new code with the job."""
    hosts, ansible, work = fleet
    head = hosts.hosts[0]
    project = tmp_path / "faces"
    shutil.copytree(work / "faces", project)
    with (project / "pipeline.py").open("a") as code:
        code.write(EDIT)
    images = tmp_path / "images"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/faces/make_data.py"), "--count", "24", "--out", str(images)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    broker = f"redis://:{ansible.env['SHOAL_BROKER_PASSWORD']}@{head.address}:6379/0"
    env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home"), "SHOAL_CLUSTER_KEY": ansible.env["SHOAL_CLUSTER_KEY"]}
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "run", str(project), "-i", str(images), "--broker", broker,
         "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-4000:]  # 1: some generated images are broken on purpose
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert results
    assert all(r["result"]["edited"] is True for r in results), "the edited code ran"
    ran = {r["worker"].rsplit(":", 1)[0] for r in results}
    assert ran <= {"h1", "h2"}
    for host in ran:  # (a short job need not reach every worker; the other tests' jobs run on both hosts)
        fetched = list((work / host / "var" / "worker-cache" / "bundles").glob("*/files/pipeline.py"))
        assert any("def edited" in path.read_text() for path in fetched), f"{host} ran the edit from its own copy"


#: a quarter of a second an item until the restart is over (the job outlasts the playbook's run
#: however slow the machine), then quick
SLOW = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("slow")

@pipeline.stage()
def wait(item):
    restarted = Path(item.input).parents[1] / "restarted"
    time.sleep(0.01 if restarted.exists() else 0.25)
    return {"text": item.read_text().strip()}
"""
ITEMS = 2400  #: 150 s of work on the fleet's 4 processes before the restart is over


def test_a_rolling_restart_mid_job_loses_and_repeats_nothing(
    fleet: tuple[Hosts, Ansible, Path], tmp_path: Path
) -> None:
    """The playbook restarts every worker, one host at a time (SIGTERM: warm shutdown), while a
    job runs on them: every item ends once, and both the old and the new workers ran items."""
    hosts, ansible, _ = fleet
    project = tmp_path / "slow"
    project.mkdir()
    (project / "pipeline.py").write_text(SLOW)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(ITEMS):
        (data / f"{i:04d}.txt").write_text(f"{i}\n")
    broker = f"redis://:{ansible.env['SHOAL_BROKER_PASSWORD']}@{hosts.hosts[0].address}:6379/0"
    env = {**os.environ, "SHOAL_HOME": str(tmp_path / "home"), "SHOAL_CLUSTER_KEY": ansible.env["SHOAL_CLUSTER_KEY"]}
    out = tmp_path / "out"
    with subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", str(project), "-i", str(data), "--broker", broker, "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as run:  # fmt: skip
        try:
            assert run.stdout is not None
            for line in run.stdout:  # the job is under way on the fleet
                if "running job" in line:
                    break
            restart = ansible("site.yml", "--tags", "workers", "-e", "shoal_restart_workers=true")
            assert "Restart after a change of environment or code shoal-worker-1" in restart
            (tmp_path / "restarted").touch()
            assert run.poll() is None, "the job ended before the restart did: it tests nothing"
            assert run.wait(400) == 0, run.stdout.read()[-4000:]
        finally:
            run.kill()
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["result"]["text"] for r in results) == sorted(str(i) for i in range(ITEMS)), "each item once"
    assert {r["attempts"] for r in results} == {1}, "nothing ran twice"
    assert {r["worker"].rsplit(":", 1)[0] for r in results} == {"h1", "h2"}
    assert len({r["worker"] for r in results}) > 4, "processes of the restarted workers ran items too"


def wait_for_job(http: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/api/v1/jobs/{job_id}").json())["state"] not in FINAL_STATES:
        assert time.monotonic() < deadline, f"not finished after {timeout} s: {job}"
        time.sleep(0.5)
    return dict(job)


def test_prometheus_scrapes_targets_from_the_inventory(fleet: tuple[Hosts, Ansible, Path]) -> None:
    hosts, _, _ = fleet
    h1, h2 = hosts.hosts
    answer = httpx.get(f"http://{h1.address}:9090/api/v1/targets", timeout=10).json()
    found = {(t["labels"]["job"], t["labels"]["instance"]) for t in answer["data"]["activeTargets"]}
    assert {
        ("node", f"{h1.address}:9100"), ("node", f"{h2.address}:9100"), ("shoal-server-token", f"{h1.address}:8000"),
        ("shoal-workers", f"{h1.address}:9101"), ("shoal-workers", f"{h2.address}:9101"),
        ("shoal-workers", f"{h2.address}:9102"),
    } <= found  # fmt: skip


def test_the_units_pass_systemd_analyze(fleet: tuple[Hosts, Ansible, Path]) -> None:
    _, _, work = fleet
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (Debian's systemd package)")
    units = sorted(work.glob("h*/etc/systemd/*.service"))
    names = {unit.name for unit in units}
    assert {
        "shoal-redis.service",
        "shoal-server.service",
        "shoal-worker-1.service",
        "shoal-prometheus.service",
    } <= names
    for unit in units:
        checked = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, f"{unit}: {checked.stderr}"
        assert not checked.stderr.strip(), f"{unit}: {checked.stderr}"
        assert "KillSignal=SIGTERM" in unit.read_text()


def test_cloud_init_user_data_passes_the_schema(fleet: tuple[Hosts, Ansible, Path]) -> None:
    _, ansible, work = fleet
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        pytest.skip("cloud-init is missing: apt-get install --no-install-recommends cloud-init")
    out = work / "user-data.yaml"
    ansible(
        "cloud-init.yml", "-e", f"shoal_cloud_init_out={out}", "-e", "shoal_cloud_init_wheels=https://files.invalid/wheels/",
    )  # fmt: skip
    checked = subprocess.run([cloud_init, "schema", "--config-file", str(out)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    data = yaml.safe_load(out.read_text())
    assert any("SHOAL_BROKER_URL=redis://" in f["content"] for f in data["write_files"])
    assert "shoal-worker-0.service" in str(data["runcmd"])


def test_fewer_workers_in_the_inventory_stop_the_extra_ones(fleet: tuple[Hosts, Ansible, Path]) -> None:
    """h2 runs two workers; with shoal_worker_count=1 the playbook stops and removes the second.
    (The last test of the module: it leaves the fleet smaller.)"""
    _, ansible, work = fleet
    supervisorctl = [str(Path(str(tool("supervisord"))).parent / "supervisorctl"), "-c"]
    status = [*supervisorctl, str(work / "h2" / "etc" / "supervisord.conf"), "status"]
    before = subprocess.run(status, capture_output=True, text=True, timeout=30).stdout
    assert "shoal-worker-1" in before
    ansible("site.yml", "--tags", "workers", "-e", "shoal_worker_count=1")
    after = subprocess.run(status, capture_output=True, text=True, timeout=30).stdout
    assert re.search(r"shoal-worker-0\s+RUNNING", after), after
    assert "shoal-worker-1" not in after
    assert not (work / "h2" / "etc" / "systemd" / "shoal-worker-1.service").exists()
    assert not (work / "h2" / "etc" / "shoal-worker-1.env").exists()
    assert (work / "h2" / "etc" / "systemd" / "shoal-worker-0.service").exists()
