"""The model registry and the traffic it routes: versions of code and model files, promote and
roll back from the CLI and the API, a canary rolled back by its guardrails, a sticky canary, a
shadow compared and never answering, and an automatic promotion, against a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shoal import registry
from shoal.store import Ledger
from tests.conftest import MakeProject
from tests.helpers import shoal_cli
from tests.web_server import LiveServer, running

pytestmark = pytest.mark.integration

PIPELINE = """
import random, shoal
pipeline = shoal.Pipeline("scorer")

@pipeline.stage(batch_size=8)
class Score:
    def setup(self):
        with open(__file__.rsplit("/", 1)[0] + "/weights.txt") as weights:
            self.weight = float(weights.read())

    def process(self, items):
        out = []
        for item in items:
            if random.random() < FAILS:
                out.append(RuntimeError("this version fails now and then"))
            else:
                text = item.meta["text"] if item.uri is None else item.read_text()
                out.append({"score": self.weight * len(text), "weight": self.weight})
        return out

FAILS = 0.0
"""
TOML = '[project]\nmodels = ["weights.txt"]\n[serve]\nmax_latency_ms = 2\nlog_requests = true\n'


def _version(project: Path, weight: float, fails: float = 0.0) -> Path:
    (project / "weights.txt").write_text(str(weight))
    (project / "pipeline.py").write_text(PIPELINE.replace("FAILS = 0.0", f"FAILS = {fails}"))
    return project


@pytest.fixture
def project(make_project: MakeProject) -> Path:
    return _version(make_project(PIPELINE, toml=TOML), 1.0)


@pytest.fixture
def server(project: Path, home: Path) -> Iterator[LiveServer]:
    yield from running(LiveServer(projects=[project]))


def _register(project: Path) -> str:
    done = shoal_cli("models", "register", str(project), "--source", "test")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _ask(client: httpx.Client, key: str | None = None) -> dict[str, object]:
    headers = {"x-shoal-key": key} if key else {}
    answer = client.post(
        "/api/v1/pipelines/scorer/predict", json={"inputs": [{"meta": {"text": "abcd"}}]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    output: dict[str, object] = answer.json()["outputs"][0]
    return output


def _until(check: Callable[[], bool], what: str, seconds: float = 60) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > seconds:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.1)
    return time.monotonic() - began


def _ask_until_judged(client: httpx.Client, ledger: Ledger, canary: str, samples: int) -> list[dict[str, object]]:
    """Ask until the canary has answered enough to be judged, then stop: its verdict mostly comes
    with no request after it, so only the watcher's own reading of the registry ends the trial."""
    answers: list[dict[str, object]] = []

    def judged() -> bool:
        answers.append(_ask(client))
        traffic = client.get("/api/v1/models/scorer").json()["traffic"]
        answered = traffic.get(canary, {}).get("answered", 0)
        return answered >= samples or "canary" not in registry.aliases(ledger, "scorer")

    _until(judged, "the canary's samples", 120)
    return answers


def test_a_version_is_the_code_and_its_model_files_kept_whole(project: Path, home: Path) -> None:
    first = _register(project)
    assert _register(project) == first  # the same files: the same version, registered once
    (project / "weights.txt").write_text("2.0")  # the model alone changed: a new version
    second = _register(project)
    assert second != first
    kept = home / "shoal-runs" / "versions" / "scorer"
    assert (kept / first / "weights.txt").read_text() == "1.0"
    assert (kept / second / "weights.txt").read_text() == "2.0"

    assert shoal_cli("models", "promote", "scorer", first[:6]).returncode == 0  # a prefix names it
    promoted = shoal_cli("models", "promote", "scorer", second)
    assert f"production is {second} (was {first})" in promoted.stdout
    listed = shoal_cli("models", "list", "scorer").stdout.splitlines()
    assert listed[0].startswith(second)
    assert listed[0].endswith("production")
    back = shoal_cli("models", "rollback", "scorer", "--reason", "scores drifted")
    assert f"production is {first} again" in back.stdout
    shown = json.loads(shoal_cli("models", "show", "scorer", first).stdout)
    assert shown["aliases"] == ["production"]
    assert [e["kind"] for e in shown["events"]][:2] == ["rolled_back", "promoted"]
    assert shown["events"][0]["detail"] == "scores drifted"

    broken = shoal_cli("models", "rollback", "nothing-here")
    assert broken.returncode != 0
    assert "no earlier production version" in broken.stderr
    (project / "pipeline.py").write_text(PIPELINE + "\nimport no_such_module_for_shoal\n")
    refused = shoal_cli("models", "register", str(project))
    assert refused.returncode != 0
    assert "no_such_module_for_shoal" in refused.stderr  # a version that does not import is not kept


def test_production_follows_the_registry_not_the_folder_and_moves_without_a_failed_request(
    server: LiveServer, project: Path
) -> None:
    first = _register(project)
    with server.client() as client:
        assert client.post("/api/v1/models/scorer/promote", json={"version": first}).status_code == 200
        _until(lambda: _ask(client)["version"] == first, "serving the promoted version")
        _version(project, 3.0)  # an edit of the folder: production stays the registered version
        time.sleep(2.5)
        assert _ask(client)["version"] == first
        second = _register(project)

        failures: list[str] = []
        seen: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with server.client() as own:
                while not stop.is_set():
                    answer = own.post("/api/v1/pipelines/scorer/predict", json={"inputs": [{"meta": {"text": "ab"}}]})
                    if answer.status_code != 200 or not answer.json()["outputs"][0]["ok"]:
                        failures.append(answer.text)
                    else:
                        seen.append(answer.json()["outputs"][0]["version"])

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        assert client.post("/api/v1/models/scorer/promote", json={"version": second}).status_code == 200
        _until(lambda: bool(seen) and seen[-1] == second, "the promoted version answering")
        assert client.post("/api/v1/models/scorer/rollback", json={"reason": "test"}).status_code == 200
        _until(lambda: seen[-1] == first, "the rolled back version answering")
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not failures, failures[:3]
        model = client.get("/api/v1/models/scorer").json()
        assert model["aliases"]["production"]["version"] == first
        assert model["aliases"]["production"]["previous"] == second
        assert model["traffic"][first]["role"] == "production"


def test_a_failing_canary_is_rolled_back_by_its_guardrails_with_the_reason(
    server: LiveServer, project: Path, home: Path
) -> None:
    first = _register(project)
    shoal_cli("models", "promote", "scorer", first)
    _version(project, 2.0, fails=0.3)
    deployed = shoal_cli("deploy", str(project), "--canary", "50%", "--min-samples", "20", "--max-error-rate", "0.05")
    assert deployed.returncode == 0, deployed.stderr
    assert "takes 50% of traffic as a canary" in deployed.stdout
    canary = deployed.stdout.split(":")[1].split()[0]
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    with server.client() as client:
        answers = _ask_until_judged(client, ledger, canary, 20)
        _until(lambda: "canary" not in registry.aliases(ledger, "scorer"), "the canary's rollback", 30)
        assert {a["version"] for a in answers} == {first, canary}  # it did take part of the traffic
        time.sleep(1.5)  # the watcher judges 4 times a second: it must not judge an ended trial again
        after = [_ask(client) for _ in range(10)]
        assert {a["version"] for a in after} == {first}
        assert all(a["ok"] for a in after)
    (event,) = [e for e in registry.events(ledger, "scorer") if e["kind"] == "canary_rolled_back"]
    assert event["version"] == canary
    assert event["by"] == "guardrails"
    assert "error rate" in event["detail"]
    assert "passed the limit of 5.0%" in event["detail"]
    assert registry.aliases(ledger, "scorer")["production"].version == first
    ledger.close()
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert (
        f'shoal_model_decisions_total{{action="rollback",pipeline="scorer",role="canary",version="{canary}"}} 1.0'
        in (metrics)
    )


def test_a_canary_is_sticky_by_key_and_a_good_one_is_promoted_when_asked(
    server: LiveServer, project: Path, home: Path
) -> None:
    first = _register(project)
    shoal_cli("models", "promote", "scorer", first)
    _version(project, 5.0)
    deployed = shoal_cli("deploy", str(project), "--canary", "30%", "--min-samples", "100", "--auto-promote")
    canary = deployed.stdout.split(":")[1].split()[0]
    with server.client() as client:
        _until(lambda: any(_ask(client, f"user-{n}")["version"] == canary for n in range(20)), "the canary warm")
        by_key = {f"user-{n}": _ask(client, f"user-{n}")["version"] for n in range(20)}
        for _ in range(2):
            assert {key: _ask(client, key)["version"] for key in by_key} == by_key  # the same key, the same way
        assert set(by_key.values()) == {first, canary}
        ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")

        _ask_until_judged(client, ledger, canary, 100)
        _until(lambda: registry.aliases(ledger, "scorer")["production"].version == canary, "the promotion", 30)
        time.sleep(1.5)  # the watcher judges 4 times a second: it must promote once
        _until(lambda: all(_ask(client)["version"] == canary for _ in range(5)), "the promoted version serving")
    aliases = registry.aliases(ledger, "scorer")
    assert "canary" not in aliases  # it is production now
    assert aliases["production"].previous == first  # a rollback goes back to the version before it
    (event,) = [e for e in registry.events(ledger, "scorer") if e["kind"] == "promoted" and e["by"] == "guardrails"]
    assert event["version"] == canary
    assert "within its guardrails" in event["detail"]
    ledger.close()
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert (
        f'shoal_model_decisions_total{{action="promote",pipeline="scorer",role="canary",version="{canary}"}} 1.0'
        in metrics
    )


def test_a_shadow_sees_a_copy_never_answers_and_is_stopped_when_it_disagrees(
    server: LiveServer, project: Path, home: Path
) -> None:
    first = _register(project)
    shoal_cli("models", "promote", "scorer", first)
    _version(project, 7.0)  # scores differently: every comparison disagrees
    deployed = shoal_cli("deploy", str(project), "--shadow", "--min-samples", "10")
    assert deployed.returncode == 0, deployed.stderr
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    with server.client() as client:
        answers: list[dict[str, object]] = []

        def stopped() -> bool:
            answers.append(_ask(client))
            return "shadow" not in registry.aliases(ledger, "scorer")

        _until(stopped, "the shadow stopped", 120)
    assert {a["version"] for a in answers} == {first}  # the shadow never answered
    (event,) = [e for e in registry.events(ledger, "scorer") if e["kind"] == "shadow_rolled_back"]
    assert "disagreed with production on 100.0%" in event["detail"]
    ledger.close()


def test_the_request_log_replays_what_one_version_answered_through_another(
    server: LiveServer, project: Path, home: Path
) -> None:
    first = _register(project)
    shoal_cli("models", "promote", "scorer", first)
    with server.client() as client:
        _until(lambda: _ask(client)["version"] == first, "the registered version serving")
        body = {"inputs": [{"meta": {"text": "abc"}}, {"data": "abcdefgh"}]}
        assert client.post("/api/v1/pipelines/scorer/predict", json=body).status_code == 200
        files = [("files", ("f.txt", b"xyz", "text/plain"))]
        assert client.post("/api/v1/pipelines/scorer/predict", files=files).status_code == 200
    _version(project, 2.0)
    second = _register(project)
    time.sleep(1.0)  # the log is written in batches, twice a second

    same = shoal_cli("models", "replay", "scorer", "--version", first, "--with", first)
    assert same.returncode == 0, same.stderr
    answered = int(same.stdout.split(": ")[1].split()[0])
    assert answered >= 4  # every input answered so far, the uploaded file and the inline text kept
    assert f"{answered} agree, 0 differ" in same.stdout

    other = shoal_cli("models", "replay", "scorer", "--version", first, "--with", second)
    assert other.returncode == 1, other.stderr
    assert f"0 agree, {answered} differ" in other.stdout
    assert "'weight': 1.0} -> {" in other.stdout
    assert "'weight': 2.0}" in other.stdout
