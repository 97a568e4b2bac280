"""Online predict against a real server and its warm replicas: answers in order with per-input
errors, adaptive batches, 429 past the queue, 504 past a deadline, 4xx for bad requests, and a
code change served without dropping a request under concurrent clients."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeProject
from tests.helpers import shoal_cli
from tests.web_server import LiveServer, running

pytestmark = pytest.mark.integration

PIPELINE = """
import os, time, shoal
pipeline = shoal.Pipeline("echo")
VERSION = "one"

@pipeline.stage(batch_size=16)
class Words:
    def setup(self):
        time.sleep(float(os.environ.get("ECHO_LOAD_S", "0")))  # a model that takes a while to load

    def process(self, items):
        time.sleep(float(os.environ.get("ECHO_BATCH_S", "0")))
        out = []
        for item in items:
            text = item.meta.get("text") if item.uri is None else item.read_text()
            if text == "boom":
                out.append(ValueError("cannot read boom"))
            else:
                out.append({"words": len(text.split()), "batch": len(items), "version": VERSION})
        return out
"""

SERVE = "[serve]\nreplicas = 1\nmax_batch_size = 16\nmax_latency_ms = 20\nmax_queue = {queue}\ntimeout_ms = 20000\n"


@pytest.fixture
def server(make_project: MakeProject, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("ECHO_BATCH_S", "0.05")
    project = make_project(PIPELINE, toml=SERVE.format(queue=64))
    live = LiveServer(projects=[project])
    live.project = project  # type: ignore[attr-defined]
    yield from running(live)


def _predict(client: httpx.Client, body: dict[str, object]) -> httpx.Response:
    return client.post("/api/v1/pipelines/echo/predict", json=body, timeout=60)


def test_answers_come_in_request_order_with_failures_per_input(server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("a file of six words here")
    uploads = Path(os.environ["SHOAL_HOME"]) / "serving" / "echo" / "uploads"
    with server.client() as client:
        alone = _predict(client, {"inputs": [{"meta": {"text": "no file here"}}]})
        assert alone.json()["outputs"][0]["result"]["words"] == 3
        assert not uploads.exists()  # inputs in meta need no folder of their own on disk
        response = _predict(
            client,
            {
                "inputs": [
                    {"meta": {"text": "one two three"}},
                    {"data": "boom"},
                    {"data_base64": base64.b64encode(b"four words in bytes").decode()},
                    {"uri": str(tmp_path / "file.txt")},
                    {"uri": str(tmp_path / "missing.txt")},
                ]
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        outputs = body["outputs"]
        assert [o["ok"] for o in outputs] == [True, False, True, True, False]
        assert [o["result"]["words"] for o in outputs if o["ok"]] == [3, 4, 6]
        assert outputs[1]["error"]["type"] == "ValueError"
        assert "cannot read boom" in outputs[1]["error"]["message"]
        assert outputs[4]["error"]["type"] == "FetchError"
        assert {o["version"] for o in outputs} == {body["version"]}

        files = [("files", ("a.txt", b"x y", "text/plain")), ("files", ("b.txt", b"x y z", "text/plain"))]
        multipart = client.post("/api/v1/pipelines/echo/predict", files=files, timeout=60)
        assert multipart.status_code == 200, multipart.text
        assert [o["result"]["words"] for o in multipart.json()["outputs"]] == [2, 3]
        assert uploads.is_dir()
        assert not list(uploads.iterdir())  # each request's files went with it

        status = client.get("/api/v1/pipelines/echo/serving").json()
        assert status["active"]["ready"] == 1
        assert status["active"]["version"] == body["version"]


def _thread_cpu_s(name: str) -> float:
    """CPU seconds a thread of this process has used, from /proc (what `top -H` shows)."""
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_server_sleeps_while_its_replica_works_on_a_batch(
    make_project: MakeProject, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs held past max_latency_ms while the only replica is busy: the thread that drives the
    replica waits for its answer, it does not spin (a spinning server took a core from the model)."""
    monkeypatch.setenv("ECHO_BATCH_S", "1.5")
    with contextlib.ExitStack() as stack:
        live = LiveServer(projects=[make_project(PIPELINE, toml=SERVE.format(queue=64))])
        stack.enter_context(contextlib.contextmanager(running)(live))
        client = stack.enter_context(live.client())
        assert _predict(client, {"inputs": [{"data": "warm up"}]}).status_code == 200
        pool = ThreadPoolExecutor(2)
        stack.callback(pool.shutdown)
        first = pool.submit(_predict, client, {"inputs": [{"data": "one"}]})
        time.sleep(0.3)  # the first batch runs; the second request waits behind it, past 20 ms
        second = pool.submit(_predict, client, {"inputs": [{"data": "two"}]})
        time.sleep(0.2)
        before, began = _thread_cpu_s("shoal-serve-echo"), time.monotonic()
        time.sleep(0.8)
        used = _thread_cpu_s("shoal-serve-echo") - before
        waited = time.monotonic() - began
        assert first.result().status_code == second.result().status_code == 200
    assert used < 0.25 * waited, f"the driving thread used {used:.2f} s of CPU in {waited:.2f} s of waiting"


def test_concurrent_requests_are_batched_and_a_lone_one_is_not_held(server: LiveServer) -> None:
    with server.client() as client:
        assert _predict(client, {"inputs": [{"data": "warm up"}]}).status_code == 200
        began = time.monotonic()
        lone = _predict(client, {"inputs": [{"data": "alone"}]})
        alone_s = time.monotonic() - began
        assert lone.json()["outputs"][0]["result"]["batch"] == 1
        assert alone_s < 2.0  # 50 ms of work: never held for a batch that will not come

        def one(n: int) -> int:
            with server.client() as own:
                answer = _predict(own, {"inputs": [{"data": f"text {n}"}]})
                assert answer.status_code == 200, answer.text
                return int(answer.json()["outputs"][0]["result"]["batch"])

        with ThreadPoolExecutor(32) as clients:
            batches = list(clients.map(one, range(64)))
    assert max(batches) > 1  # while a batch runs the next ones queue, and go together
    assert max(batches) <= 16
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'shoal_predict_requests_total{outcome="ok",pipeline="echo"' in metrics
    assert "shoal_predict_batch_size_bucket" in metrics
    assert 'shoal_predict_traffic_share{pipeline="echo",role="production"' in metrics


def test_overload_is_a_429_with_retry_after_and_a_deadline_a_504(server: LiveServer) -> None:
    with server.client() as client:
        too_many = _predict(client, {"inputs": [{"data": "x"}] * 65})
        assert too_many.status_code == 429, too_many.text
        assert int(too_many.headers["Retry-After"]) >= 1
        assert "the limit is 64" in too_many.json()["detail"]

        slow = _predict(client, {"inputs": [{"data": "x"}] * 48, "timeout_ms": 1})
        assert slow.status_code == 504, slow.text
        assert "deadline of 0.001 s" in slow.json()["detail"]


def test_a_request_expected_past_the_latency_slo_is_refused_at_once(
    make_project: MakeProject, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With latency_slo_ms, a request that would wait behind too many batches is a 429 naming the
    objective at once, not a late answer; those taken are all answered, and a request that finds
    nothing ahead of it is taken however large."""
    monkeypatch.setenv("ECHO_BATCH_S", "0.05")
    toml = SERVE.format(queue=1024) + "latency_slo_ms = 150\n"
    with contextlib.ExitStack() as stack:
        live = LiveServer(projects=[make_project(PIPELINE, toml=toml)])
        stack.enter_context(contextlib.contextmanager(running)(live))
        client = stack.enter_context(live.client())
        for size in (1, 16, 1, 16):  # two batch sizes: the batch time is fitted (about 50 ms each)
            assert _predict(client, {"inputs": [{"data": "warm"}] * size}).status_code == 200
        large = _predict(client, {"inputs": [{"data": "x"}] * 64})  # four batches, 200 ms: alone, taken
        assert large.status_code == 200, large.text

        def one(n: int) -> httpx.Response:
            with live.client() as own:
                return _predict(own, {"inputs": [{"data": f"text {n}"}] * 16})

        with ThreadPoolExecutor(24) as clients:
            answers = list(clients.map(one, range(24)))
    refused = [a for a in answers if a.status_code == 429]
    taken = [a for a in answers if a.status_code != 429]
    assert refused, "24 requests of a batch each at once: most would wait past 150 ms"
    assert taken, "the first finds nothing ahead of it"
    assert all(a.status_code == 200 and all(o["ok"] for o in a.json()["outputs"]) for a in taken)
    assert "past latency_slo_ms 150" in refused[0].json()["detail"]
    assert int(refused[0].headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": [{"uri": "a", "data": "b"}]}, 422, "input 0: give one of uri, data or data_base64"),
        ({"inputs": [{}]}, 422, "input 0: give a uri, data, data_base64 or meta"),
        ({"inputs": [{"data_base64": "!!"}]}, 422, "input 0: data_base64 is not base64"),
        ({"nothing": 1}, 422, "inputs"),
    ],
)
def test_malformed_bodies_are_named(server: LiveServer, body: dict[str, object], status: int, words: str) -> None:
    with server.client() as client:
        response = _predict(client, body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_an_oversized_body_is_a_413_naming_the_limit(make_project: MakeProject, home: Path) -> None:
    project = make_project(PIPELINE, toml=SERVE.format(queue=64))
    for live in running(LiveServer(projects=[project], max_upload_mb=1)):
        with live.client() as client:
            files = [("files", ("big.txt", b"x" * (2 * 2**20), "text/plain"))]
            too_big = client.post("/api/v1/pipelines/echo/predict", files=files)
            assert too_big.status_code == 413, too_big.text
            assert too_big.json()["limit"] == 2**20
            inline = _predict(client, {"inputs": [{"data": "x" * (2 * 2**20)}]})
            assert inline.status_code == 413, inline.text


def test_unknown_pipeline_and_non_json_are_4xx(server: LiveServer) -> None:
    with server.client() as client:
        unknown = client.post("/api/v1/pipelines/nope/predict", json={"inputs": [{"data": "x"}]})
        assert unknown.status_code == 404
        assert "echo" in unknown.json()["known"]
        garbled = client.post(
            "/api/v1/pipelines/echo/predict", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert garbled.status_code == 422
        assert "not JSON" in garbled.json()["detail"]


def test_an_edited_version_takes_over_under_load_without_a_dropped_request(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project: Path = server.project  # type: ignore[attr-defined]
    monkeypatch.setenv("ECHO_LOAD_S", "1.5")  # the new version's replica takes a while to load
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        with server.client() as client:
            while not stop.is_set():
                answer = _predict(client, {"inputs": [{"data": "a b"}, {"data": "c"}]})
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                    continue
                outputs = answer.json()["outputs"]
                if len({o["result"]["version"] for o in outputs}) != 1:
                    failures.append(f"one request answered by two versions: {outputs}")
                versions.append(outputs[0]["result"]["version"])

    with server.client() as client:
        assert _predict(client, {"inputs": [{"data": "warm"}]}).status_code == 200
    threads = [threading.Thread(target=client_loop) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    (project / "pipeline.py").write_text(PIPELINE.replace('VERSION = "one"', 'VERSION = "two"'))
    deadline = time.monotonic() + 60
    while (not versions or versions[-1] != "two") and time.monotonic() < deadline and not failures:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:3]
    assert "one" in versions
    assert versions[-1] == "two"
    switched = versions.index("two")
    assert set(versions[switched:]) == {"two"} or versions[switched:].count("one") <= len(threads)


def test_a_version_that_does_not_import_leaves_the_old_one_serving(server: LiveServer) -> None:
    project: Path = server.project  # type: ignore[attr-defined]
    with server.client() as client:
        first = _predict(client, {"inputs": [{"data": "a"}]})
        assert first.status_code == 200
        (project / "pipeline.py").write_text(PIPELINE + "\nimport no_such_module_for_shoal\n")
        time.sleep(2.5)  # the catalog looks at the code again every 2 s
        again = _predict(client, {"inputs": [{"data": "a b"}]})
        assert again.status_code == 200, again.text
        assert again.json()["version"] == first.json()["version"]
        status = client.get("/api/v1/pipelines/echo/serving").json()
        assert "no_such_module_for_shoal" in status["problem"]


def test_shoal_predict_prints_one_answer_per_file_in_order(server: LiveServer, tmp_path: Path) -> None:
    files = []
    for name, text in (("a.txt", "one"), ("b.txt", "boom"), ("c.txt", "one two three")):
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    done = shoal_cli("predict", "echo", *files, "--server", server.url)
    assert done.returncode == 1, done.stderr  # one input failed
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(line["file"]).name for line in lines] == ["a.txt", "b.txt", "c.txt"]
    assert [line["ok"] for line in lines] == [True, False, True]
    assert lines[2]["result"]["words"] == 3
    missing = shoal_cli("predict", "echo", str(tmp_path / "nope.txt"), "--server", server.url)
    assert missing.returncode != 0
    assert "not a file" in missing.stderr


def test_replicas_change_at_runtime_warm_first_then_take_over(server: LiveServer) -> None:
    with server.client() as client:
        assert _predict(client, {"inputs": [{"data": "a"}]}).status_code == 200
        changed = client.put("/api/v1/pipelines/echo/serving", json={"replicas": 2})
        assert changed.status_code == 202, changed.text
        assert changed.json()["starting"]["replicas"] == 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert _predict(client, {"inputs": [{"data": "a b"}]}).status_code == 200  # served all along
            active = client.get("/api/v1/pipelines/echo/serving").json()["active"]
            if active["replicas"] == 2 and active["ready"] == 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the two replicas never took over")
        assert client.put("/api/v1/pipelines/echo/serving", json={"replicas": 99}).status_code == 422


def test_hostile_inline_data_is_a_clear_4xx_or_a_per_input_error(server: LiveServer) -> None:
    with server.client() as client:
        not_ascii = _predict(client, {"inputs": [{"data_base64": "\u00ad\u00ce"}]})
        assert not_ascii.status_code == 422, not_ascii.text
        assert "input 0: data_base64 is not base64" in not_ascii.json()["detail"]
        surrogate = client.post(
            "/api/v1/pipelines/echo/predict",
            content=b'{"inputs": [{"data": "\\ud834x"}]}',
            headers={"content-type": "application/json"},
        )
        assert surrogate.status_code == 422, surrogate.text
        assert "not JSON" in surrogate.json()["detail"]
        nul = _predict(client, {"inputs": [{"uri": "a\u0000b"}, {"data": "fine"}]})
        assert nul.status_code == 200, nul.text
        assert [o["ok"] for o in nul.json()["outputs"]] == [False, True]


@pytest.fixture
def rolling_server(make_project: MakeProject, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("ECHO_BATCH_S", "0.02")
    monkeypatch.setenv("ECHO_LOAD_S", "0.5")  # each replica takes a while to load
    toml = SERVE.format(queue=256).replace("replicas = 1", "replicas = 3") + 'swap = "rolling"\n'
    live = LiveServer(projects=[make_project(PIPELINE, toml=toml)])
    yield from running(live)


def test_a_rolling_swap_replaces_replicas_one_by_one_without_a_dropped_request(
    rolling_server: LiveServer, make_project: MakeProject
) -> None:
    project = Path(rolling_server.settings.projects[0])
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with rolling_server.client() as client:
            while not stop.is_set():
                answer = _predict(client, {"inputs": [{"data": "a b"}]})
                if answer.status_code != 200 or not answer.json()["outputs"][0]["ok"]:
                    failures.append(answer.text)
                else:
                    versions.append(answer.json()["outputs"][0]["result"]["version"])

    def status(client: httpx.Client) -> dict[str, Any]:
        found: dict[str, Any] = client.get("/api/v1/pipelines/echo/serving").json()
        return found

    alive, sizes = [], set()
    with rolling_server.client() as client:
        deadline = time.monotonic() + 60
        while (status(client)["active"] or {}).get("ready", 0) < 3:
            _predict(client, {"inputs": [{"data": "warm"}]})
            assert time.monotonic() < deadline, "three replicas never got ready"
            time.sleep(0.2)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        (project / "pipeline.py").write_text(PIPELINE.replace('VERSION = "one"', 'VERSION = "two"'))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = status(client)
            alive.append(sum((p or {}).get("alive", 0) for p in (now["active"], now["starting"])))
            if now["starting"] is not None:
                sizes.add(now["starting"]["replicas"])
            if now["starting"] is None and now["active"]["ready"] == 3 and versions[-1:] == ["two"]:
                break
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:3]
    assert versions[-1] == "two"
    assert "one" in versions
    assert 1 in sizes  # the new version started with one replica, and grew
    assert max(alive) <= 4  # never a second set of three: one replica more at most
