"""examples/stream-experiment end to end, shortened: a real streaming job (HOG people detector),
`shoal feed` at a rising-then-falling MB/s profile, a real Prometheus and `shoal metrics export`,
and the summary's figures checked against what was fed and what the job did."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.engines import REDIS_URL, require_service
from tests.prometheus import require

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # about 60 s alone

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stream-experiment"
LEVELS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25)  #: the example's default
STEP_S = 2.0
WORKERS = 2


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One short run of the experiment (13 steps of 2 s), shared by the checks below."""
    require_service(6379)
    require("prometheus")
    out = tmp_path_factory.mktemp("experiment") / "out"
    home = out.parent / "shoal-runs"
    command = [sys.executable, str(EXAMPLE / "run_experiment.py"), "--out", str(out), "--redis", REDIS_URL]
    command += ["--step-seconds", str(STEP_S), "--interval", "2", "--frames", "24", "--workers", str(WORKERS)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=280, env={**os.environ, "SHOAL_HOME": str(home)}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def _summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "summary.json").read_text()))


def test_the_feed_followed_the_profile_up_and_down(experiment: tuple[Path, Any]) -> None:
    out, _ = experiment
    summary = _summary(out)
    steps = summary["steps"]
    profile = summary["profile"]
    capacity, frame_mb = profile["capacity_mbps"], profile["frame_mb"]
    assert capacity == pytest.approx(max(profile["probed_frames_per_s"] * frame_mb, profile["floor_mbps"]), rel=0.01)
    assert [s["asked_mb_per_s"] for s in steps] == pytest.approx([level * capacity for level in LEVELS], rel=1e-3)
    for s in steps:  # a step holds whole frames: allow one frame and a half either way, or 20 %
        assert abs(s["sent_mb_per_s"] - s["asked_mb_per_s"]) <= max(0.2 * s["asked_mb_per_s"], 1.5 * frame_mb / STEP_S)
    sent = [s["sent_mb_per_s"] for s in steps]
    assert sent[0] < sent[2] < sent[4] < sent[6] > sent[8] > sent[10] > sent[12]
    with (out / "feed.csv").open(newline="") as handle:
        fed = list(csv.DictReader(handle))
    assert sum(s["items"] for s in steps) == len(fed) == summary["job"]["succeeded"]
    assert summary["job"]["probe"] == 12 * WORKERS
    assert summary["job"]["failed"] == 0
    if "(opencv-doc)" in summary["frames"]:  # generated frames hold no one HOG would call a person
        assert summary["job"]["people_mean"] > 0.5


def test_latency_and_cpu_were_measured_over_the_whole_window(experiment: tuple[Path, Any]) -> None:
    out, _ = experiment
    steps = _summary(out)["steps"]
    for s in steps:
        assert s["done"] == s["items"] > 0
        assert 0 < s["e2e_p50_s"] <= s["e2e_p95_s"] < 60
        assert 0 < s["job_cpu_cores"] <= WORKERS + 0.5  # the workers and the coordinator
    assert steps[6]["job_cpu_cores"] > 2 * steps[0]["job_cpu_cores"]  # 1.75x capacity against 0.25x
    with (out / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == _summary(out)["intervals"] >= 10
    full = [r for r in rows if float(r["covered_s"]) >= 2]
    assert all(r["input_mb_per_s"] and r["e2e_p95_s"] and r["job_cpu_cores"] for r in full)


def test_prometheus_saw_every_frame_the_job_did(experiment: tuple[Path, Any]) -> None:
    out, _ = experiment
    job = _summary(out)["job"]
    with (out / "metrics" / "metrics.csv").open(newline="") as handle:
        done = [
            float(r["value"])
            for r in csv.DictReader(handle)
            if r["metric"] == "shoal_items_total" and json.loads(r["labels"]).get("outcome") == "succeeded"
        ]
    assert max(done) == job["succeeded"] + job["probe"]


def test_correlations_are_defined_and_bounded(experiment: tuple[Path, Any]) -> None:
    out, _ = experiment
    found = {(c["x"], c["y"]): c for c in _summary(out)["correlations"]}
    wanted = {("input_mb_per_s", "e2e_p95_s"), ("input_mb_per_s", "job_cpu_cores"), ("backlog_items", "e2e_p95_s")}
    assert wanted <= set(found)
    assert all(found[pair]["pearson"] is not None for pair in wanted)
    for c in found.values():
        assert c["intervals"] >= 8
        if c["pearson"] is None:  # a saturated machine's CPU stays at its cores: r is undefined, and says why
            assert "did not vary" in c["undefined"]
        else:
            assert -1 <= c["pearson"] <= 1
            assert -1 <= c["spearman"] <= 1


def test_the_energy_line_is_honest(experiment: tuple[Path, Any]) -> None:
    out, done = experiment
    energy = _summary(out)["energy"]
    readable = [p for p in Path("/sys/class/powercap").glob("intel-rapl:*/energy_uj") if os.access(p, os.R_OK)]
    if readable:
        assert energy["available"]
        assert energy["joules"] > 0
    else:
        assert not energy["available"]
        assert energy["line"].startswith("energy: RAPL counters not available on this machine (")
        assert "J over" not in done.stdout
    assert energy["line"] in done.stdout
    assert (out / "summary.txt").read_text().splitlines()[-1] == energy["line"]


def test_the_figure_is_written_and_nothing_is_left_running(experiment: tuple[Path, Any]) -> None:
    import redis

    out, _ = experiment
    figure = (out / "experiment.png").read_bytes()
    assert figure.startswith(b"\x89PNG")
    assert 20_000 < len(figure) < 200_000
    assert not (out / "store").exists()  # the sent copies are removed once done
    running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(out).encode() in cmdline.read_bytes():
                running.append(cmdline.parent.name)
        except OSError:
            continue
    assert not running, f"processes of the experiment still running: {running}"
    client = redis.Redis.from_url(REDIS_URL)
    assert not list(client.scan_iter("shoal-experiment-*"))  # its input stream was deleted
    client.close()


def test_an_experiment_can_be_summarized_again_at_another_interval(experiment: tuple[Path, Any]) -> None:
    out, _ = experiment
    before = _summary(out)
    again = subprocess.run(
        [sys.executable, str(EXAMPLE / "run_experiment.py"), "--out", str(out), "--summarize", "--interval", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    after = _summary(out)
    assert after["interval_s"] == 4
    assert before["intervals"] // 2 <= after["intervals"] <= before["intervals"] // 2 + 1
    assert after["steps"] == before["steps"]  # steps come from the raw logs, not the intervals
    assert after["job"] == before["job"]


def test_rapl_package_counters_are_added_across_a_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The energy module on a powercap tree laid out as Linux does (no RAPL here to read)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stream_experiment_energy", EXAMPLE / "energy.py")
    assert spec is not None
    assert spec.loader is not None
    energy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, energy)  # its dataclass looks itself up there
    spec.loader.exec_module(energy)
    for zone, start in (("intel-rapl:0", 1_900_000), ("intel-rapl:1", 100_000), ("intel-rapl:0:0", 5)):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "energy_uj").write_text(f"{start}\n")
        (tmp_path / zone / "max_energy_range_uj").write_text("2000000\n")
    first = energy.read(tmp_path)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("400000\n")  # wrapped: 0.5 J in all
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("1100000\n")  # 1 J
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("999999\n")  # a part of package 0: not added again
    measured = energy.between(first, energy.read(tmp_path), 3.0)
    assert measured["zones"] == {"intel-rapl:0": 0.5, "intel-rapl:1": 1.0}
    assert measured["joules"] == 1.5
    assert measured["watts"] == 0.5
    assert measured["line"].startswith("energy: 1.5 J over 3.0 s, 0.5 W mean")
    missing = energy.between(energy.read(tmp_path / "absent"), energy.read(tmp_path / "absent"), 3.0)
    assert not missing["available"]
    assert missing["line"].startswith("energy: RAPL counters not available on this machine (")
    assert "does not exist" in missing["reason"]
