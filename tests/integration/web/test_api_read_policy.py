"""A server's jobs read only what its read policy allows, decided where files are opened: no
protocol spelling, list, table, link or late swap gets a job to a file outside its folders.

Every case runs against a live server started with --allow-path, with a pipeline that returns
the start of whatever it reads: a secret it was not allowed to read would show in the results."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.web_server import LiveServer, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

SECRET = "TOP-SECRET-LINE shoal must never read this\n"

READER = """
import shoal

pipeline = shoal.Pipeline("reader")

@pipeline.stage()
def read(item):
    return {"start": item.read_text()[:40]}
"""


@pytest.fixture
def setting(tmp_path: Path, serve: Callable[..., LiveServer]) -> dict[str, Any]:
    """A server allowed one folder; a secret file beside it (and in a folder linked from it)."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    secret_folder = tmp_path / "secret"
    secret_folder.mkdir()
    secret = secret_folder / "secret.txt"
    secret.write_text(SECRET)
    (allowed / "fine.txt").write_text("fine to read\n")
    project = tmp_path / "reader"
    project.mkdir()
    (project / "pipeline.py").write_text(READER)
    server = serve(projects=[project], allow_paths=[allowed])
    return {"server": server, "allowed": allowed, "secret": secret}


def _outcome(http: Any, job_id: str) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    wait_for_end(http, job_id)
    results = {
        json.loads(line)["input"]: json.loads(line)
        for line in http.get(f"/api/v1/jobs/{job_id}/results.jsonl").text.splitlines()
    }
    errors = {
        row["input"]: row for row in csv.DictReader(io.StringIO(http.get(f"/api/v1/jobs/{job_id}/errors.csv").text))
    }
    everything = json.dumps(results) + json.dumps(errors)
    assert "TOP-SECRET" not in everything, "the secret was read"
    return results, errors


@pytest.mark.parametrize(
    "spelling",
    [
        "{secret}",
        "file://{secret}",
        "FILE://{secret}",
        "file:///{secret}",
        "local://{secret}",
        "simplecache::file://{secret}",
        "filecache::file://{secret}",
        "blockcache::local://{secret}",
        "dir::file://{folder}",
        "reference://{secret}",
        "memory://{secret}",
        "zip://secret.txt::file://{folder}/x.zip",
        "{allowed}/../secret/secret.txt",
        "{allowed}/./../secret",
    ],
)
def test_a_spelling_of_a_file_outside_is_refused_with_the_rule(setting: dict[str, Any], spelling: str) -> None:
    name = spelling.format(secret=setting["secret"], folder=setting["secret"].parent, allowed=setting["allowed"])
    with setting["server"].client() as http:
        answer = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [name]})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert "this server reads" in detail or "outside the folders" in detail, detail
        assert "TOP-SECRET" not in answer.text


def test_a_list_or_table_in_an_allowed_folder_cannot_name_a_file_outside(setting: dict[str, Any]) -> None:
    allowed, secret = setting["allowed"], setting["secret"]
    listing = allowed / "list.txt"
    names = [
        str(secret),
        f"file://{secret}",
        f"local://{secret}",
        f"simplecache::file://{secret}",
        f"../secret/{secret.name}",
        str(allowed / "fine.txt"),
    ]
    listing.write_text("\n".join(names) + "\n")
    table = allowed / "table.csv"
    table.write_text(f"uri,label\n{secret},a\n{allowed / 'fine.txt'},b\n")
    with setting["server"].client() as http:
        for source, outside in ((listing, 4), (table, 1)):  # the relative name repeats the first: one item
            answer = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [str(source)]})
            assert answer.status_code == 202, answer.text
            results, errors = _outcome(http, answer.json()["id"])
            assert [r["result"]["start"] for r in results.values()] == ["fine to read\n"]
            assert len(errors) == outside
            assert {row["error_type"] for row in errors.values()} == {"InputError"}
            assert all("this server reads local files only under" in row["message"] for row in errors.values())


def test_a_link_inside_an_allowed_folder_to_a_file_outside_is_not_followed(setting: dict[str, Any]) -> None:
    allowed, secret = setting["allowed"], setting["secret"]
    (allowed / "link.txt").symlink_to(secret)
    (allowed / "linked-folder").symlink_to(secret.parent)
    (allowed / "inner").mkdir()
    (allowed / "inner" / "ok.txt").write_text("fine to read\n")
    (allowed / "link-inside.txt").symlink_to(allowed / "inner" / "ok.txt")  # a link that stays inside: fine
    with setting["server"].client() as http:
        direct = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [str(allowed / "link.txt")]})
        assert direct.status_code == 422
        assert f"leads to {secret}" in direct.json()["detail"]
        answer = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [str(allowed)]})
        assert answer.status_code == 202, answer.text
        results, errors = _outcome(http, answer.json()["id"])
        assert sorted(Path(name).name for name in results) == ["fine.txt", "link-inside.txt", "ok.txt"]
        assert sorted(Path(name).name for name in errors) == ["link.txt", "linked-folder"]
        assert all("outside the folders this server reads" in row["message"] for row in errors.values())


def test_a_data_file_linked_in_as_a_list_is_refused_before_a_line_is_read(setting: dict[str, Any]) -> None:
    """A link named like a list (.txt) to a file outside: parsed as a list, its lines would
    become items, and their names (the file's lines) errors. It is refused whole."""
    allowed = setting["allowed"]
    (allowed / "passwords.txt").symlink_to(setting["secret"])
    with setting["server"].client() as http:
        answer = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [str(allowed / "passwords.txt")]})
        assert answer.status_code == 422
        assert "TOP-SECRET" not in answer.text
        assert http.get("/api/v1/jobs").json()["total"] == 0


def test_a_file_swapped_for_a_link_after_submission_is_refused_when_opened(setting: dict[str, Any]) -> None:
    """The check that counts is the one on the file a worker opens, not on the name submitted."""
    allowed, secret = setting["allowed"], setting["secret"]
    (allowed / "swap.txt").write_text("harmless for now\n")
    listing = allowed / "swap-list.txt"
    listing.write_text(f"{allowed / 'swap.txt'}\n")
    with setting["server"].client() as http:
        answer = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [str(listing)]})
        assert answer.status_code == 202

        (allowed / "swap.txt").unlink()  # accepted by name, swapped before a worker opens it
        (allowed / "swap.txt").symlink_to(secret)
        _, errors = _outcome(http, answer.json()["id"])
        assert list(errors) == [str(allowed / "swap.txt")]
        assert errors[str(allowed / "swap.txt")]["error_type"] == "ReadRefusedError"
        assert f"leads to {secret}" in errors[str(allowed / "swap.txt")]["message"]


def test_an_upload_may_be_read_but_what_it_lists_obeys_the_policy(setting: dict[str, Any]) -> None:
    """An upload lands in the server's own data folder, always readable: submitted again as a
    list, its lines are inputs of their own, and the policy holds for each."""
    secret = setting["secret"]
    files = {"files": ("names.txt", f"{secret}\nlocal://{secret}\nfile://{secret}\n".encode(), "text/plain")}
    with setting["server"].client() as http:
        uploaded = http.post("/api/v1/jobs/upload", data={"pipeline": "reader"}, files=files)
        assert uploaded.status_code == 202, uploaded.text
        _outcome(http, uploaded.json()["id"])  # the upload itself, read as a file: allowed
        (folder,) = uploaded.json()["inputs"]
        listed = http.post("/api/v1/jobs", json={"pipeline": "reader", "inputs": [f"{folder}/names.txt"]})
        assert listed.status_code == 202, listed.text
        results, errors = _outcome(http, listed.json()["id"])
        assert results == {}
        assert len(errors) == 3
