"""A loopback server is no open door for web pages: Host and Origin are checked on real requests.

DNS rebinding sends a page's requests here with its own name in Host; a cross-site form or fetch
sends the right Host with a foreign Origin. Both are refused; every client that is not a web page
(curl, `shoal submit`, Prometheus) sends neither and is unaffected.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.store import Ledger
from shoal.store.tokens import create_token
from tests.web_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]


def _raw(server: LiveServer, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request written by hand (any Host, none, HTTP/1.0); the status and body."""
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=60) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "127.0.0.1",
        "localhost:{port}",
        "LocalHost:{port}",
        "localhost.:{port}",
        "[::1]:{port}",
        "[::1]",
        "127.0.0.2:{port}",
        "shoal.localhost:{port}",
        "a.b.LOCALHOST.",
    ],
)
def test_loopback_names_are_answered(serve: Callable[..., LiveServer], host: str) -> None:
    server = serve()
    with server.client() as http:
        response = http.get("/api/v1/jobs", headers={"Host": host.format(port=server.settings.port)})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:{port}",
        "ATTACKER.example.",
        "localhost.attacker.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "localhost-attacker.example",
        "xlocalhost:{port}",
        "10.1.2.3:{port}",
        "[fe80::1]:{port}",
        "2130706433:{port}",  # 127.0.0.1 as a number: a name to a browser, not an address here
        "127.0.0.1:{port}:80",
        "user@127.0.0.1",
    ],
)
def test_a_foreign_host_is_refused_with_400_naming_it_and_the_flag(serve: Callable[..., LiveServer], host: str) -> None:
    server = serve()
    value = host.format(port=server.settings.port)
    with server.client() as http:
        for method, path, body in (
            ("POST", "/api/v1/jobs", {"pipeline": "tool", "inputs": ["/etc/passwd"]}),
            ("GET", "/api/v1/jobs", None),
            ("GET", "/healthz", None),
            ("GET", "/", None),
        ):
            response = http.request(method, path, json=body, headers={"Host": value, "Origin": f"http://{value}"})
            assert response.status_code == 400, (method, path, response.text)
            detail = response.json()["detail"]
            assert repr(value) in detail, detail
            assert "--allowed-host" in detail


@pytest.mark.parametrize(
    "head",
    [
        "GET /api/v1/jobs HTTP/1.0\r\n",  # no Host at all
        "GET /api/v1/jobs HTTP/1.0\r\nHost: \r\n",
        "GET /api/v1/jobs HTTP/1.0\r\nHost: attacker.example\r\n",
        "GET /api/v1/jobs HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n",
    ],
)
def test_a_request_without_a_host_we_know_is_refused(serve: Callable[..., LiveServer], head: str) -> None:
    server = serve()
    status, body = _raw(server, head)
    assert status == 400, body
    assert b"--allowed-host" in body or b"Host" in body


def test_an_allowed_host_is_answered_and_other_names_are_not(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()], allowed_hosts=["shoal.example", "*.team.example"])
    port = server.settings.port
    with server.client() as http:
        for host in ("shoal.example", f"SHOAL.example.:{port}", "a.team.example", f"b.c.team.example:{port}"):
            assert http.get("/api/v1/jobs", headers={"Host": host}).status_code == 200, host
        for host in ("team.example", "sub.shoal.example", "shoal.example.attacker.example", "ateam.example"):
            assert http.get("/api/v1/jobs", headers={"Host": host}).status_code == 400, host
        posted = http.post(
            "/api/v1/jobs",
            json={"pipeline": "tool", "inputs": [str(files(1))]},
            headers={"Host": "shoal.example", "Origin": "https://shoal.example"},
        )
        assert posted.status_code == 202, posted.text


def test_a_star_lets_any_host_in_but_still_refuses_cross_site_posts(serve: Callable[..., LiveServer]) -> None:
    server = serve(allowed_hosts=["*"])
    with server.client() as http:
        assert http.get("/api/v1/jobs", headers={"Host": "anything.example"}).status_code == 200
        foreign = http.post("/api/v1/jobs", json={"pipeline": "x"}, headers={"Origin": "http://attacker.example"})
        assert foreign.status_code == 403


def _post(server: LiveServer, headers: dict[str, str], data: Path) -> int:
    with server.client() as http:
        return http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(data)]}, headers=headers).status_code


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://attacker.example"}, 403),
        ({"Origin": "https://attacker.example"}, 403),
        ({"Origin": "null"}, 403),  # a sandboxed frame or a file:// page
        ({"Origin": "http://localhost.attacker.example:{port}"}, 403),
        ({"Origin": "http://127.0.0.1:1"}, 403),  # another server on this machine is another site
        ({"Origin": "http://127.0.0.1:{port}.attacker.example"}, 403),
        ({"Origin": "ftp://127.0.0.1:{port}"}, 403),
        ({"Origin": "not a url"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),  # a browser that sends no Origin says so here
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "http://127.0.0.1:{port}"}, 202),  # the server's own page
        ({"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}, 202),
        ({"Sec-Fetch-Site": "same-origin"}, 202),
        ({"Sec-Fetch-Site": "none"}, 202),  # typed by the user
        ({}, 202),  # curl, shoal submit: no page at all
    ],
)
def test_a_change_from_a_foreign_page_is_refused_with_403(
    serve: Callable[..., LiveServer],
    tool_project: Callable[..., Path],
    files: Callable[..., Path],
    headers: dict[str, str],
    status: int,
) -> None:
    server = serve(projects=[tool_project()])
    sent = {k: v.format(port=server.settings.port) for k, v in headers.items()}
    assert _post(server, sent, files(1)) == status


def test_reading_with_a_foreign_origin_is_allowed_and_every_change_is_checked(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    foreign = {"Origin": "http://attacker.example"}
    with server.client() as http:
        job = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1))]}).json()["id"]
        assert http.get("/api/v1/jobs", headers=foreign).status_code == 200  # no CORS: the page cannot read it
        assert http.get(f"/api/v1/jobs/{job}", headers=foreign).status_code == 200
        refused = http.post(f"/api/v1/jobs/{job}/cancel", headers=foreign)
        assert refused.status_code == 403
        assert "Origin" in refused.json()["detail"]
        assert http.post("/api/v1/session", json={"token": "x"}, headers=foreign).status_code == 403
        assert http.delete("/api/v1/session", headers=foreign).status_code == 403
        assert http.request("PUT", "/api/v1/jobs", headers=foreign).status_code == 403
        assert http.request("PATCH", "/api/v1/jobs", headers=foreign).status_code == 403


def test_a_cross_site_upload_is_refused_before_anything_is_stored(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], home: Path
) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        response = http.post(
            "/api/v1/jobs/upload",
            data={"pipeline": "tool"},
            files={"files": ("a.txt", b"a")},
            headers={"Origin": "http://attacker.example"},
        )
    assert response.status_code == 403
    uploads = home / "shoal-runs" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_the_login_cookie_is_http_only_and_same_site(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()], auth=True)
    ledger = Ledger(server.settings.ledger_url)
    token = create_token(ledger, "browser")
    ledger.close()
    with server.client() as http:
        response = http.post("/api/v1/session", json={"token": token}, headers={"Origin": server.url})
        assert response.status_code == 204
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie or "samesite=strict" in cookie


def test_a_refused_request_leaves_the_connection_open_for_the_next(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=60)
    conn.auto_open = 0  # the second request fails if the server closed the connection
    conn.connect()
    try:
        for headers, status in (
            ({"Host": "attacker.example"}, 400),
            ({"Host": f"127.0.0.1:{server.settings.port}", "Origin": "http://attacker.example"}, 403),
            ({"Host": f"127.0.0.1:{server.settings.port}"}, 200),
        ):
            method = "GET" if status != 403 else "POST"
            conn.request(method, "/api/v1/jobs", body=b"{}" if method == "POST" else None, headers=headers)
            response = conn.getresponse()
            assert response.status == status, response.read()
            json.loads(response.read())
    finally:
        conn.close()
