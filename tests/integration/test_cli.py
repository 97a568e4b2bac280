"""The `shoal` command as a user meets it: exit codes, one-line errors, progress, jobs, report."""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.helpers import ECHO, SLOW_SETUP, read_results, shoal_cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-project"], "no project at no-such-project: expected a folder holding pipeline.py"),
        (["run", "{project}", "--frobnicate"], "No such option: --frobnicate"),
        (["run", "{project}", "--workers", "zero"], "Invalid value for '--workers'"),
        (["run", "{project}", "-i", "missing-folder"], "/missing-folder"),
        (["run", "{project}"], "no inputs: pass --input PATH_OR_URL, or set inputs in shoal.toml"),
        (
            ["run", "{project}", "-i", "{listing}", "--workers", "0"],
            "workers=0: Input should be greater than or equal to 1",
        ),
        (["report", "no-such-job"], "no job 'no-such-job'"),
    ],
)
def test_usage_errors_are_one_clear_line_and_exit_2(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], args: list[str], message: str
) -> None:
    project = make_project(ECHO)
    listing = inputs(1)
    result = shoal_cli(*(a.format(project=project, listing=listing) for a in args), cwd=home)
    assert result.returncode == (1 if args[0] == "report" else 2)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("shoal: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_syntax_error_in_pipeline_names_file_and_line(home: Path, make_project: MakeProject) -> None:
    project = make_project("import shoal\npipeline = shoal.Pipeline('x')\n\ndef broken(:\n    pass\n")
    result = shoal_cli("run", str(project), "-i", ".", cwd=home)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"{project / 'pipeline.py'}, line 4: syntax error" in result.stderr

    with_debug = shoal_cli("run", str(project), "-i", ".", "--debug", cwd=home)
    assert with_debug.returncode == 2
    assert "Traceback" in with_debug.stderr


def test_missing_dependency_and_failing_setup_are_configuration_errors(home: Path, make_project: MakeProject) -> None:
    missing = make_project("import shoal, no_such_module_here\n", name="missing")
    result = shoal_cli("run", str(missing), "-i", ".", cwd=home)
    assert result.returncode == 2
    assert "imports 'no_such_module_here', which is not installed" in result.stderr

    failing = make_project(
        """
        import shoal
        pipeline = shoal.Pipeline("setup-fails")

        @pipeline.stage()
        class Model:
            def setup(self):
                raise FileNotFoundError("weights.bin")
            def process(self, item):
                return {}
        """,
        name="failing",
    )
    (home / "one.txt").write_text("x")
    result = shoal_cli("run", str(failing), "-i", str(home / "one.txt"), "-w", "1", cwd=home)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "setup() of stage 'Model' failed on worker " + result.stderr.split("worker ")[-1].strip()
    )
    assert "FileNotFoundError: weights.bin" in result.stderr


def test_help_names_what_each_option_takes_and_version_prints(home: Path) -> None:
    bare = shoal_cli(cwd=home)
    assert bare.returncode == 0, bare.stderr  # no command: the help, not an error
    assert "error" not in bare.stderr
    for summary in ("run a project's pipeline over its inputs (resumes)", "create, list and revoke API tokens"):
        assert summary in bare.stdout  # whole, not cut off
    assert "..." not in bare.stdout.split("Commands:")[1]
    run = shoal_cli("run", "--help", cwd=home)
    for usage in ("PROJECT", "--input PATH_OR_URL", "--workers N", "--out DIR_OR_URL", "--timeout SECONDS", "--db URL"):
        assert usage in run.stdout
    assert "<list[str]>" not in run.stdout
    assert "<str>" not in run.stdout
    version = shoal_cli("--version", cwd=home)
    assert version.returncode == 0
    assert re.fullmatch(r"shoal \d+\.\d+\.\d+\S*\n", version.stdout)


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["redis://127.0.0.1:{port}/0", "amqp://guest:hush@127.0.0.1:{port}//"])
def test_a_broker_that_is_down_is_one_line_exit_2_and_leaves_no_job(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], scheme: str
) -> None:
    broker = scheme.format(port=_closed_port())
    result = shoal_cli("run", str(make_project(ECHO)), "-i", str(inputs(3)), "--broker", broker, cwd=home)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"shoal: error: cannot reach the broker at {broker.replace(':hush@', ':***@')}")
    assert "hush" not in result.stderr
    assert "start it, or point --broker" in result.stderr
    listed = shoal_cli("jobs", cwd=home)
    assert "echo-" not in listed.stdout  # no empty "interrupted" job left behind
    assert not list((home / "shoal-runs").glob("echo-*"))


def test_a_run_folder_of_another_job_is_never_written_over(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    """The same command from another folder has another ledger: with the same --out it must not
    replace the first job's results."""
    project, listing, shared = make_project(ECHO), inputs(3), home / "shared-out"
    (home / "first").mkdir()
    (home / "second").mkdir()

    def run_from(folder: str) -> subprocess.CompletedProcess[str]:  # ./shoal-runs: each folder its own ledger
        env = {"SHOAL_HOME": str(home / folder / "shoal-runs")}
        return shoal_cli("run", str(project), "-i", str(listing), "--out", str(shared), cwd=home / folder, env=env)

    first = run_from("first")
    assert first.returncode == 0, first.stderr
    before = {path.name: path.read_bytes() for path in shared.iterdir() if path.is_file()}

    second = run_from("second")
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1, second.stderr
    assert f"the run folder {shared} holds job echo-" in second.stderr
    assert "pass another --out" in second.stderr
    assert {path.name: path.read_bytes() for path in shared.iterdir() if path.is_file()} == before
    listed = shoal_cli("jobs", cwd=home, env={"SHOAL_HOME": str(home / "second" / "shoal-runs")})
    assert "echo-" not in listed.stdout  # no empty job left in the second ledger


def test_the_same_command_from_another_folder_finds_the_same_job(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SHOAL_HOME the ledger is in the user's data folder, wherever the command runs."""
    monkeypatch.delenv("SHOAL_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    project, listing = make_project(ECHO), inputs(3)
    (home / "first").mkdir()
    (home / "second").mkdir()
    first = shoal_cli("run", str(project), "-i", str(listing), cwd=home / "first")
    assert first.returncode == 0, first.stderr
    second = shoal_cli("run", str(project), "-i", str(listing), cwd=home / "second")
    assert second.returncode == 0, second.stderr
    assert "already ran over these inputs" in second.stderr  # found, not run again
    (out,) = (home / "data" / "shoal").glob("echo-*")
    assert not list(home.glob("*/shoal-runs"))
    listed = shoal_cli("jobs", cwd=home / "second", env={"COLUMNS": "400"})
    assert f"jobs in sqlite:///{home / 'data' / 'shoal' / 'ledger.db'}" in listed.stdout  # where it is
    assert out.name in listed.stdout

    (home / "second" / "shoal-runs").mkdir()
    (home / "second" / "shoal-runs" / "ledger.db").touch()  # where an older shoal kept its ledger
    for command in (["run", str(project), "-i", str(listing)], ["jobs"]):
        said = shoal_cli(*command, cwd=home / "second")
        assert "jobs run here before are in shoal-runs/ledger.db; SHOAL_HOME=shoal-runs" in said.stdout + said.stderr


def test_result_files_follow_the_umask(home: Path, make_project: MakeProject, inputs: Callable[[int], Path]) -> None:
    """A team folder's readers can read a run's files: no file is made private behind the umask's back."""
    command = [sys.executable, "-m", "shoal", "run", str(make_project(ECHO)), "-i", str(inputs(3))]
    result = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", *command], cwd=home, capture_output=True)
    assert result.returncode == 0, result.stderr
    out = next((home / "shoal-runs").glob("echo-*"))
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir() if path.is_file()}
    assert {"job.json", "results.jsonl", "performance.txt", "runtime.png"} <= set(modes)
    assert set(modes.values()) == {0o640}, modes


def test_run_prints_progress_and_summary_then_jobs_and_report(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    project = make_project(ECHO)
    result = shoal_cli("run", str(project), "-i", str(inputs(30)), "-w", "2", cwd=home)
    assert result.returncode == 0, result.stderr
    assert "shoal: running job echo-" in result.stderr  # plain progress lines when not on a terminal
    assert "finished: 30 done, 0 failed, 30 total" in result.stderr
    assert "30 total, 30 succeeded, 0 failed" in result.stdout
    assert "mostly start-up, so speedup and efficiency say little" in " ".join(result.stdout.split())  # a short job
    out = next((home / "shoal-runs").glob("echo-*"))
    for name in (
        "results.jsonl",
        "results.csv",
        "errors.csv",
        "report.json",
        "performance.txt",
        "runtime.png",
        "throughput.png",
    ):
        assert (out / name).is_file(), name

    jobs = shoal_cli("jobs", cwd=home)
    assert jobs.returncode == 0
    assert out.name in jobs.stdout
    assert "succeeded" in jobs.stdout

    (out / "results.jsonl").unlink()
    (out / "runtime.png").unlink()
    again = shoal_cli("report", str(out), cwd=home)
    assert again.returncode == 0, again.stderr
    assert len(read_results(out)) == 30
    assert (out / "runtime.png").read_bytes().startswith(b"\x89PNG")
    by_id = shoal_cli("report", out.name, cwd=home)
    assert by_id.returncode == 0
    assert "30 succeeded" in by_id.stdout


def test_limit_processes_only_the_first_inputs_and_is_a_job_of_its_own(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    project = make_project(ECHO)
    listing = inputs(20)
    limited = shoal_cli("run", str(project), "-i", str(listing), "--limit", "5", cwd=home)
    assert limited.returncode == 0, limited.stderr
    out = next((home / "shoal-runs").glob("echo-*"))
    assert sorted(r["result"]["text"] for r in read_results(out)) == ["0", "1", "2", "3", "4"]
    whole = shoal_cli("run", str(project), "-i", str(listing), cwd=home)
    assert whole.returncode == 0
    assert "already ran" not in whole.stderr
    assert "20 total, 20 succeeded" in whole.stdout


def test_progress_bar_on_a_terminal(home: Path, make_project: MakeProject, inputs: Callable[[int], Path]) -> None:
    import os
    import pty
    import subprocess
    import sys

    project = make_project(ECHO)
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", str(project), "-i", str(inputs(50)), "-w", "2"],
        cwd=home, stdin=secondary, stdout=secondary, stderr=secondary, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(60) == 0
    os.close(primary)
    text = output.decode(errors="replace")
    assert "50/50" in text  # the bar's done/total column
    assert "items/s" in text
    assert "━" in text
    assert "shoal: running job" not in text  # plain lines are for pipes and logs


def test_workers_started_before_the_run_folder_log_all_of_it_there(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    """`shoal run` starts its workers before it opens the ledger; what they wrote before the run
    folder was known (setup's first line) is in the run folder's log, in order, with the rest, and
    so is what a process setup() started wrote after (the scratch log is linked into the folder)."""
    result = shoal_cli("run", str(make_project(SLOW_SETUP)), "-i", str(inputs(4)), "-w", "2", "--out", "run", cwd=home)
    assert result.returncode == 0, result.stderr
    logs = sorted((home / "run" / "logs").glob("*.log"))
    assert len(logs) == 2
    ran = []
    for log in logs:
        lines = log.read_text().splitlines()
        assert lines[:3] == ["setup began", "a child of setup spoke", "setup ended"], lines
        ran += [line for line in lines[3:] if line.startswith("ran ")]
    assert len(ran) == 4
