"""The url-captions example end to end: image URLs on a loopback server in, captions that match
the pictures out, bad URLs failed alone, embeddings that find the right picture, and a second
job that takes every detector's result from the content cache."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import pytest

from tests.helpers import read_errors, read_results, shoal_cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "url-captions"
PICTURES = (
    "astronaut.jpg",
    "coffee.jpg",
    "page.jpg",
    "sign-stop.png",
    "sign-bread.png",
    "sign-exit.png",
    "coffee-cafe.jpg",
    "chelsea-cat.jpg",
    "people-0060.jpg",
    "people-0260.jpg",
)
COPIES = ("astronaut.jpg", "sign-stop.png", "people-0060.jpg")  #: served again under other URLs
FETCH_TIMEOUT_S = 2
SLOW_S = 6  #: past the fetch timeout
RUN_ENV = {"SHOAL_FETCH_TIMEOUT": str(FETCH_TIMEOUT_S), "SHOAL_RETRY_BACKOFF": "0.1"}


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"url_captions_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(home: Path) -> Iterator[tuple[str, list[str]]]:
    """The example's server on a free loopback port, over a folder of pictures that make_data.py
    draws; yields its URL and the names of the pictures it serves."""
    make_data, serve = _module("make_data"), _module("serve")
    pictures = make_data.originals()
    folder = home / "images"
    folder.mkdir()
    names = [name for name in PICTURES if name in pictures]  # people-*: only where opencv-doc is installed
    for name in names:
        assert cv2.imwrite(str(folder / name), pictures[name])
    (folder / "notes.txt").write_text("a text file, not an image\n")
    running: ThreadingHTTPServer = serve.start(folder, delay=SLOW_S)
    yield f"http://127.0.0.1:{running.server_address[1]}", names
    running.shutdown()
    running.server_close()


def _url_list(home: Path, base: str, names: list[str]) -> tuple[Path, dict[str, str]]:
    """Every picture once, three again under other URLs, and three URLs that must fail."""
    bad = {"missing": f"{base}/missing.jpg", "not an image": f"{base}/notes.txt", "slow": f"{base}/slow/astronaut.jpg"}
    urls = [f"{base}/{name}" for name in names] + [f"{base}/{name}?copy=1" for name in COPIES if name in names]
    listing = home / "urls.txt"
    listing.write_text("\n".join([*urls[:4], *bad.values(), *urls[4:]]) + "\n")
    return listing, bad


def _run(listing: Path, out: Path, *extra: str) -> dict[str, dict[str, Any]]:
    done = shoal_cli(
        "run", str(EXAMPLE), "--input", str(listing), "--out", str(out), "--workers", "2", *extra,
        env=RUN_ENV, timeout=900,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # 1: the three bad URLs failed, the rest succeeded
    return {record["input"]: record["result"] for record in read_results(out)}


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


@pytest.mark.timeout(900)  # the first run installs requirements.txt (torch, MiniLM, RapidOCR)
def test_captions_match_the_pictures_bad_urls_fail_alone_and_a_second_job_hits_the_cache(
    home: Path, server: tuple[str, list[str]]
) -> None:
    base, names = server
    listing, bad = _url_list(home, base, names)
    results = _run(listing, home / "run1")

    assert len(results) == len(names) + sum(name in names for name in COPIES)
    by_name = {_name(url): result for url, result in results.items() if "?" not in url}
    assert set(by_name) == set(names)
    for url, result in results.items():
        assert result == by_name[_name(url)], url  # a copy under another URL: the same record
        assert len(result["embedding"]) == 384
        assert math.isclose(sum(v * v for v in result["embedding"]), 1.0, abs_tol=1e-3)
        assert result["format"] in ("jpeg", "png")
    astronaut = by_name["astronaut.jpg"]
    assert astronaut["faces"] == 1
    assert astronaut["caption"].startswith("a picture of a face")
    assert (by_name["coffee.jpg"]["faces"], by_name["coffee.jpg"]["people"]) == (0, 0)
    assert by_name["sign-stop.png"]["text"] == "STOP"
    assert by_name["sign-stop.png"]["caption"] == 'a picture with the text "STOP"'
    assert by_name["sign-bread.png"]["text"] == "FRESH BREAD"
    assert by_name["coffee-cafe.jpg"]["text"] == "CAFE"
    assert "Region-based segmentation" in by_name["page.jpg"]["text"]
    for name in ("people-0060.jpg", "people-0260.jpg"):
        if name in by_name:
            assert by_name[name]["people"] >= 1, name
            assert by_name[name]["faces"] == 0, name
            assert " people" in by_name[name]["caption"] or "a person" in by_name[name]["caption"]

    errors = {e["input"]: e for e in read_errors(home / "run1")}
    assert set(errors) == set(bad.values())
    expected = {
        "missing": ("FetchError", "not found (HTTP 404)", "1"),
        "not an image": ("CorruptInputError", "not an image (26 bytes starting b'a text file", "1"),
        "slow": ("FetchError", f"timed out after {FETCH_TIMEOUT_S} s", "2"),  # retried once (shoal.toml)
    }
    for kind, (error_type, cause, attempts) in expected.items():
        error = errors[bad[kind]]
        assert (error["stage"], error["error_type"], error["attempts"]) == ("fetch", error_type, attempts), error
        assert error["message"].startswith(bad[kind])  # names the URL
        assert cause in error["message"]

    found = _search(home / "run1", ["a stop sign", "a bakery", "a portrait of a woman", "pedestrians in a street"])
    assert "STOP" in found["a stop sign"][0]["caption"]
    assert "FRESH BREAD" in found["a bakery"][0]["caption"]
    assert found["a portrait of a woman"][0]["caption"] == astronaut["caption"]
    assert sorted(found["a stop sign"][0]["urls"]) == sorted(u for u in results if _name(u) == "sign-stop.png")
    if "people-0060.jpg" in by_name:
        assert by_name["people-0060.jpg"]["caption"] in {m["caption"] for m in found["pedestrians in a street"][:2]}

    again = _run(listing, home / "run2", "--new")  # a new job over the same URLs: the same bytes
    assert again == results
    report = json.loads((home / "run2" / "report.json").read_text())
    assert report["cache_hits"] == {stage: len(results) for stage in ("Detect", "Ocr", "Embed")}
    assert f"Detect {len(results)} of {len(results)}" in (home / "run2" / "performance.txt").read_text()


def _search(run: Path, queries: list[str]) -> dict[str, list[dict[str, Any]]]:
    """search.py, as a user runs it: MiniLM comes from the folder `shoal run` installed it into."""
    command = [sys.executable, str(EXAMPLE / "search.py"), str(run), *queries, "-k", "3", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found: dict[str, list[dict[str, Any]]] = {query: [] for query in queries}
    for line in done.stdout.splitlines():
        match = json.loads(line)
        found[match["query"]].append(match)
    return found
