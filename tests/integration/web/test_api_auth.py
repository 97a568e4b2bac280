"""Tokens: 401 without one, 403 with a wrong one, /healthz always open, the login cookie works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.store import Ledger
from shoal.store.tokens import create_token, revoke_token
from shoal.web.settings import ServerSettings
from tests.helpers import shoal_cli
from tests.web_server import LiveServer

pytestmark = pytest.mark.integration


def test_with_auth_every_route_but_healthz_needs_a_valid_token(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], home: Path
) -> None:
    server = serve(projects=[tool_project()], auth=True)
    ledger = Ledger(server.settings.ledger_url)
    token = create_token(ledger, "ci")
    with server.client() as http:
        assert http.get("/healthz").status_code == 200
        for path in ("/api/v1/jobs", "/api/v1/pipelines", "/openapi.json", "/docs"):
            missing = http.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"] == "Bearer"
            assert http.get(path, headers={"Authorization": "Bearer shoal_wrong"}).status_code == 403, path
            assert http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200, path
        page = http.get("/jobs/x", headers={"accept": "text/html"})
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/jobs/x")
        assert http.get("/login").status_code == 200
        assert http.post("/api/v1/session", json={"token": "nope"}).status_code == 403
        assert http.post("/api/v1/session", json={"token": token}).status_code == 204
        assert http.get("/api/v1/jobs").status_code == 200  # the cookie carries the token now
        assert "signed in as ci" in http.get("/", headers={"accept": "text/html"}).text
    assert revoke_token(ledger, "ci")
    ledger.close()


def test_auth_is_required_off_loopback_and_optional_on_it() -> None:
    assert not ServerSettings.build(host="127.0.0.1").auth_required
    assert not ServerSettings.build(host="::1").auth_required
    assert ServerSettings.build(host="127.0.0.1", auth=True).auth_required
    assert ServerSettings.build(host="0.0.0.0").auth_required
    assert ServerSettings.build(host="10.1.2.3").auth_required


def test_token_create_prints_a_token_once_and_stores_only_its_hash(home: Path) -> None:
    created = shoal_cli("token", "create", "alice")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("shoal_")
    assert token.encode() not in (home / "shoal-runs" / "ledger.db").read_bytes()
    listed = shoal_cli("token", "list")
    assert listed.stdout.startswith("alice\t")
    twice = shoal_cli("token", "create", "alice")
    assert twice.returncode == 2
    assert twice.stderr.startswith("shoal: error: a token named 'alice' exists")
    assert shoal_cli("token", "revoke", "alice").returncode == 0
    assert shoal_cli("token", "revoke", "alice").returncode == 2


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "/\\evil.example/x", "/\\/evil.example", "/\t/evil.example", "/\n/evil.example",
     "https://evil.example", "javascript:alert(1)", " //evil.example", "/ok\\..\\..\\evil"],
)  # fmt: skip
def test_the_login_page_sends_you_back_only_to_this_server(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], target: str
) -> None:
    """A browser reads "/\\evil.example" (or with a tab in it) as "//evil.example": another site."""
    server = serve(projects=[tool_project()], auth=True)
    with server.client() as http:
        page = http.get("/login", params={"next": target})
    assert page.status_code == 200
    assert 'data-next="/"' in page.text, target


def test_the_login_page_keeps_a_path_on_this_server(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()], auth=True)
    with server.client() as http:
        page = http.get("/login", params={"next": "/jobs/x?page=2"})
    assert 'data-next="/jobs/x?page=2"' in page.text
