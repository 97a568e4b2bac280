"""Worker logs on their way to a run folder: bounded at each end, named safely, and optional on
the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.engines import _logs
from shoal.engines._logs import CUT, Collector, Tail, log_name
from shoal.wire import Report


def test_a_log_is_named_by_host_and_pid_whatever_a_worker_calls_itself() -> None:
    assert log_name("node-7.lan:4242") == "node-7.lan-4242.log"
    assert log_name("../../etc:1") == "_.._etc-1.log"


def test_a_tail_carries_what_was_written_since_the_last_read_from_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "host-1.log"
    path.write_bytes(b"an earlier process with this pid\n")
    tail = Tail(path)
    with path.open("ab") as log:
        log.write(b"first\n")
        log.flush()
        assert tail.read() == "first\n"
        assert tail.read() == ""
        log.write(b"x" * 10 + b"\n" + b"y" * 70_000 + b"\nlast\n")
    text = tail.read()
    tail.close()
    assert text.startswith("[shoal: 70012 bytes of output cut here; all of it is in ")  # 11 + 70001: whole lines
    assert str(path) in text
    assert text.endswith("]\nlast\n")


def test_the_collector_appends_by_worker_and_stops_a_file_at_its_limit(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "logs", limit=100)
    collector.add({"a:1": "one\n", "b:2": "x" * 60})
    collector.add({"a:1": "two\n", "b:2": "y" * 60})
    collector.add({"b:2": "never written\n"})
    collector.close()
    assert (tmp_path / "logs" / "a-1.log").read_text() == "one\ntwo\n"
    assert (tmp_path / "logs" / "b-2.log").read_bytes() == b"x" * 60 + b"y" * 40 + CUT


def test_the_collector_makes_no_more_files_than_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_logs, "MAX_FILES", 3)
    collector = Collector(tmp_path / "logs")
    collector.add({f"host:{pid}": "hello\n" for pid in range(10)})  # a report naming ten workers
    collector.add({"host:0": "again\n"})  # a known one still collects
    collector.close()
    assert sorted(path.name for path in (tmp_path / "logs").iterdir()) == ["host-0.log", "host-1.log", "host-2.log"]
    assert (tmp_path / "logs" / "host-0.log").read_text() == "hello\nagain\n"


def test_reports_carry_logs_only_when_there_are_some() -> None:
    old = {"ok": [], "failed": [], "took": 0.5}
    assert Report.from_dict(old).logs == {}
    assert "logs" not in Report().to_dict()
    report = Report(logs={"h:1": "a\n"})
    report.extend(Report(logs={"h:1": "b\n", "h:2": "c\n"}))
    assert Report.from_dict(report.to_dict()).logs == {"h:1": "a\nb\n", "h:2": "c\n"}
