"""The solar example end to end: an unchanged per-file script (solar-data-tools on each site's
CSV), run by the real `shoal` command on simulated sites, finds the faults make_data.py put in."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from tests.helpers import read_errors, read_results, shoal_cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "solar"
DAYS = 90  #: short series: a file costs about half of what two years do (much of it fixed-size solver work)


def _make_data(out: Path) -> dict[str, dict[str, str]]:
    """Three sites (healthy, a capacity drop, a clock shift) and a broken file; their truth by file."""
    command = [sys.executable, str(EXAMPLE / "make_data.py"), "--sites", "3", "--days", str(DAYS)]
    command += ["--start", "2023-04-01", "--broken", "1", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)  # installs pvlib once
    with (out / "truth.csv").open(newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.mark.timeout(600)  # the first run installs solar-data-tools (with uv, from its cache: seconds)
def test_solar_example_finds_the_injected_faults_and_a_broken_file_fails_alone(home: Path) -> None:
    truth = _make_data(home / "data")
    assert [row["fault"] for row in truth.values()] == ["none", "capacity_drop", "clock_shift"]

    out = home / "run"
    script = f"{EXAMPLE / 'analyse.py'}:main"
    power = str(home / "data" / "power")
    done = shoal_cli("run", script, "--input", power, "--out", str(out), "--workers", "2", cwd=home, timeout=540)
    assert done.returncode == 1, done.stderr  # the broken file fails the exit code; the sites succeed

    results = {Path(r["input"]).name: r["result"] for r in read_results(out)}
    assert set(results) == set(truth)
    for name, result in results.items():
        site = truth[name]
        assert result["days"] == DAYS, name
        assert result["sampling_minutes"] == 15, name
        assert result["peak_kw"] == pytest.approx(float(site["ac_kw"]), rel=0.1), name  # the inverter's rating
        assert result["capacity_change"] is (site["fault"] == "capacity_drop"), name
        assert result["quality_score"] >= 0.95, name
    healthy, dropped, shifted = (results[f"site-0{n}.csv"] for n in (1, 2, 3))
    assert not healthy["time_shift"]
    assert dropped["capacity_ratio"] == pytest.approx(0.7, abs=0.1)
    found, put_in = (
        date.fromisoformat(d) for d in (dropped["capacity_change_from"], truth["site-02.csv"]["fault_from"])
    )
    assert abs((found - put_in).days) <= 7
    assert shifted["time_shift"]
    assert shifted["time_shift_minutes"] == 60
    assert shifted["shifted_days"] == pytest.approx(30, abs=3)  # the middle third of 90 days

    (error,) = read_errors(out)
    assert Path(error["input"]).name == "broken-01.csv"
    assert (error["stage"], error["error_type"], error["attempts"]) == ("main", "ValueError", "1")
    assert "broken-01.csv" in error["message"]
    assert "power_kw" in error["message"]
