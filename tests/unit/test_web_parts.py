"""Pieces of the web service that need no server: upload names, settings, tokens, warm engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    ProjectError,
    UnknownPipelineError,
)
from shoal.store import Ledger
from shoal.store.tokens import create_token, has_tokens, list_tokens, revoke_token, token_name
from shoal.web.catalog import Catalog
from shoal.web.security import Guard
from shoal.web.settings import ServerSettings, is_loopback
from shoal.web.uploads import safe_name


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        (".bashrc", "bashrc"),
        ("..", "file"),
        ("", "file"),
        ("café crème.jpg", "café crème.jpg"),
        ("a\x00b\nc.txt", "a_b_c.txt"),
        ("rm -rf *; echo.jpg", "rm -rf __ echo.jpg"),
        ("x" * 300 + ".jpeg", "x" * 145 + ".jpeg"),
        ("é" * 200 + ".txt", "é" * 73 + ".txt"),  # 150 bytes: a name's limit is in bytes, not characters
        ("\U0001f600" * 100, "_" * 100),
        ("a" + "ü" * 200, "a" + "ü" * 74),
    ],
)
def test_safe_names_keep_what_they_can_and_drop_path_parts(raw: str, stored: str) -> None:
    assert safe_name(raw) == stored


def test_a_name_taken_twice_gets_a_number() -> None:
    taken: set[str] = set()
    names = [safe_name(n, taken) for n in ("a.jpg", "dir/a.jpg", "A.JPG", "a")]
    assert names == ["a.jpg", "a (2).jpg", "A (3).JPG", "a"]


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.com"))


def test_inputs_are_limited_to_known_folders_off_loopback_or_with_allow_path(tmp_path: Path) -> None:
    assert ServerSettings.build(host="127.0.0.1").input_roots() is None
    roots = ServerSettings.build(host="0.0.0.0", projects=[tmp_path]).input_roots()
    assert roots is not None
    assert tmp_path.resolve() in roots
    with pytest.raises(ConfigError, match="port"):
        ServerSettings.build(port=70000)


def test_tokens_are_stored_as_hashes_and_checked(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert not has_tokens(ledger)
    token = create_token(ledger, "ci")
    assert token_name(ledger, token) == "ci"
    assert token_name(ledger, token + "x") is None
    assert [name for name, _ in list_tokens(ledger)] == ["ci"]
    with pytest.raises(ConfigError, match="exists"):
        create_token(ledger, "ci")

    guard = Guard(ledger, required=True)
    assert guard.check(f"Bearer {token}", None) == "ci"
    assert guard.check(None, token) == "ci"  # the login cookie
    with pytest.raises(AuthenticationError):
        guard.check(None, None)
    with pytest.raises(PermissionDeniedError):
        guard.check("Bearer shoal_nope", None)
    assert Guard(ledger, required=False).check(None, None) is None
    assert revoke_token(ledger, "ci")
    assert token_name(ledger, token) is None
    ledger.close()


def test_an_unknown_pipeline_names_the_known_ones() -> None:
    with pytest.raises(UnknownPipelineError, match="known pipelines: none") as caught:
        Catalog().get("faces")
    assert caught.value.known == []


PIPELINE = (
    "import shoal\npipeline = shoal.Pipeline({name!r})\n\n@pipeline.stage()\ndef {stage}(item):\n    return {{}}\n"
)


def test_the_catalog_reloads_edited_code_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    folders = {}
    for name in ("alpha", "beta"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / "pipeline.py").write_text(PIPELINE.format(name=name, stage="first"))
    assert Catalog.load(list(folders.values())).recheck_s == 1.0  # a server looks at most once a second
    catalog = Catalog.load(list(folders.values()), recheck_s=0)
    old = catalog.get("alpha")
    patient = Catalog.load([folders["alpha"]], recheck_s=3600)

    (folders["alpha"] / "pipeline.py").write_text(PIPELINE.format(name="alpha", stage="second"))
    new = catalog.get("alpha")
    assert new.fingerprint != old.fingerprint
    assert [s.name for s in patient.get("alpha").pipeline.stages] == ["first"]  # not looked at again yet
    assert [s.name for s in new.pipeline.stages] == ["second"]
    assert catalog.get("alpha") is new  # unchanged since: not loaded again

    (folders["alpha"] / "pipeline.py").write_text(PIPELINE.format(name="beta", stage="second"))  # beta's name
    with pytest.raises(ProjectError, match="two projects define pipeline 'beta'"):
        catalog.get("alpha")
    assert [p.pipeline.name for p in catalog] == ["alpha", "beta"]  # the listing keeps the last good alpha
    assert catalog.names == ["alpha", "beta"]

    (folders["alpha"] / "pipeline.py").write_text(PIPELINE.format(name="gamma", stage="second"))  # renamed
    with pytest.raises(UnknownPipelineError):
        catalog.get("alpha")
    assert catalog.names == ["beta", "gamma"]


def test_the_api_names_every_job_state_the_ledger_can_hold() -> None:
    from typing import get_args

    from shoal.states import JOB_STATES
    from shoal.web.schemas import JobState

    assert get_args(JobState) == JOB_STATES
