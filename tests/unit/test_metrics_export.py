"""Export without a server: segment arithmetic, times and zones, retries, failures that are
reported instead of hanging or aborting, and the files written (Prometheus is faked with httpx's
MockTransport; the real one is in tests/integration/test_metrics_export.py)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shoal.errors import ConfigError, PrometheusError
from shoal.metrics._prometheus import PrometheusAPI
from shoal.metrics._times import parse_duration, parse_time
from shoal.metrics.export import MAX_POINTS, export, iter_rows, segments
from tests.helpers import shoal_cli

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def test_segments_cover_every_step_once_under_the_point_limit() -> None:
    day_ms, step_ms = 86_400_000, 5_000
    parts = segments(0, day_ms, step_ms)
    assert len(parts) == 2
    points = [t for first, last in parts for t in range(first, last + step_ms, step_ms)]
    assert points == list(range(0, day_ms + step_ms, step_ms))
    assert all((last - first) // step_ms + 1 <= MAX_POINTS for first, last in parts)
    assert segments(0, 0, 1000) == [(0, 0)]
    with pytest.raises(ConfigError):
        segments(10, 0, 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T13:00:00+01:00", T0),
        ("2026-11-25T07:00:00-05:00", T0),
        ("2026-11-25T12:00:00Z", T0),
        (str(T0.timestamp()), T0),
    ],
)
def test_times_with_zones_come_out_in_utc(text: str, expected: dt.datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no zone: add Z for UTC or an offset"):
        parse_time("2026-11-25T12:00:00")
    with pytest.raises(ConfigError, match="not a time"):
        parse_time("yesterday")


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5), ("1m30s", 90), ("250ms", 0.25), ("2h", 7200), ("15", 15)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 s", "fast", "0s", "-5", "5x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


Handler = Callable[[httpx.Request], httpx.Response]


def fake_prometheus(fail: Callable[[httpx.Request], httpx.Response | None] = lambda r: None) -> Handler:
    """Answers like Prometheus for metrics m1 (two series) and m2 (one), a value per step."""

    def handle(request: httpx.Request) -> httpx.Response:
        failure = fail(request)
        if failure is not None:
            return failure
        if request.url.path.endswith("/label/__name__/values"):
            return httpx.Response(200, json={"status": "success", "data": ["m1", "m2"]})
        params = request.url.params
        name = params["query"].split('"')[1]
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        times = [start + k * step for k in range(int((end - start) / step) + 1)]
        labels = [{"host": "a"}, {"host": "b"}] if name == "m1" else [{}]
        result = [{"metric": {"__name__": name, **lab}, "values": [[t, str(t % 7)] for t in times]} for lab in labels]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": result}})

    return handle


def api(handler: Handler, retries: int = 2) -> PrometheusAPI:
    return PrometheusAPI(
        "http://prometheus.test", retries=retries, backoff=0.0, timeout=5, transport=httpx.MockTransport(handler)
    )


def test_export_writes_tidy_rows_in_utc(tmp_path: Path) -> None:
    with api(fake_prometheus()) as client:
        result = export(client, T0, T0 + dt.timedelta(hours=24), 5.0, ".*", tmp_path)
    points = 86_400 // 5 + 1
    assert (result.metrics, result.series, result.points) == (2, 3, 3 * points)
    assert result.missing == []
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = {"timestamp": "2026-11-25T12:00:00.000Z", "metric": "m1", "labels": '{"host":"a"}'}
    assert rows[0] == {**first, "value": repr(T0.timestamp() % 7)}
    assert rows[-1]["timestamp"] == "2026-11-26T12:00:00.000Z"
    back = list(iter_rows(tmp_path, {"m2"}))
    assert len(back) == points
    assert back[0][0] == T0
    assert [r[3] for r in back] == [float(r["value"]) for r in rows if r["metric"] == "m2"]


def test_failed_requests_are_retried(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response | None:
        calls["n"] += 1
        if calls["n"] % 2:
            return httpx.Response(503, text="overloaded")
        return None

    with api(fake_prometheus(flaky)) as client:
        result = export(client, T0, T0 + dt.timedelta(minutes=10), 5.0, ".*", tmp_path)
    assert result.missing == []
    assert result.points == 3 * 121


def test_a_range_that_keeps_failing_is_reported_and_the_rest_exported(tmp_path: Path) -> None:
    def broken_m2(request: httpx.Request) -> httpx.Response | None:
        if "m2" in request.url.params.get("query", ""):
            raise httpx.ReadTimeout("no answer", request=request)
        return None

    with api(fake_prometheus(broken_m2)) as client:
        result = export(client, T0, T0 + dt.timedelta(hours=24), 5.0, ".*", tmp_path)
    assert [(g.metric, g.start, g.end) for g in result.missing] == [
        ("m2", "2026-11-25T12:00:00.000Z", "2026-11-26T01:53:15.000Z"),
        ("m2", "2026-11-26T01:53:20.000Z", "2026-11-26T12:00:00.000Z"),
    ]
    assert "ReadTimeout" in result.missing[0].reason
    assert result.points == 2 * (86_400 // 5 + 1)
    with (tmp_path / "missing.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert len(json.loads((tmp_path / "export.json").read_text())["missing"]) == 2


def test_a_bad_query_is_not_retried() -> None:
    calls = {"n": 0}

    def bad(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(400, json={"status": "error", "error": "parse error"})

    with api(bad, retries=5) as client, pytest.raises(PrometheusError, match="HTTP 400: parse error"):
        client.get("/api/v1/query", {"query": "("})
    assert calls["n"] == 1


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_server_that_never_answers_does_not_hang_the_export(silent_server: int, tmp_path: Path) -> None:
    result = shoal_cli(
        *("metrics", "export", "--prometheus", f"http://127.0.0.1:{silent_server}", "--timeout", "0.5"),
        *("--retries", "1", "--start", "2026-11-25T12:00:00Z", "--end", "2026-11-25T13:00:00Z"),
        *("--out", str(tmp_path)),
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("shoal: error: http://127.0.0.1:")
    assert "ReadTimeout" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-11-25T12:00:00", "--end", "now"], "has no zone"),
        (["--start", "now", "--end", "2026-11-25T12:00:00Z"], "is before --start"),
        (["--start", "2026-11-25T12:00:00Z", "--end", "now", "--step", "fast"], "not a duration"),
        (["--start", "2026-11-25T12:00:00Z", "--end", "now", "--match", "("], "not a regular expression"),
    ],
)
def test_export_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = shoal_cli("metrics", "export", "--prometheus", "http://127.0.0.1:9", *args, "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_url_that_is_not_http_is_a_usage_error(tmp_path: Path) -> None:
    result = shoal_cli(
        *("metrics", "export", "--prometheus", "localhost:9090", "--start", "now", "--end", "now"),
        *("--out", str(tmp_path)),
    )
    assert result.returncode == 2
    assert "not a Prometheus URL: 'localhost:9090'" in result.stderr
