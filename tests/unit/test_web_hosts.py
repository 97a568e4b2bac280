"""The Host and Origin policy without a server: which names, addresses and pages are the server's."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import ConfigError
from shoal.web.hosts import HostPolicy, allowed_host_entry, split_authority
from shoal.web.settings import ServerSettings


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:8000", ("localhost", 8000)),
        ("localhost.:8000", ("localhost", 8000)),
        ("[::1]:8000", ("::1", 8000)),
        ("[0:0:0:0:0:0:0:1]", ("::1", None)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("", None),
        ("localhost:", None),
        ("localhost:65536", None),
        ("localhost:8000:80", None),
        ("user@localhost", None),
        ("local host", None),
        ("::1", None),  # an IPv6 address in a Host is bracketed
        ("[::1", None),
        ("[nothex]:80", None),
        ("localhost..", None),
        ("loc\u0430lhost", None),  # a Cyrillic "a": not a plain name
        ("localhost:８０", None),  # full-width digits
    ],
)
def test_hosts_are_parsed_strictly(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_authority(value) == parsed


def test_a_loopback_server_answers_to_loopback_names_and_addresses_only() -> None:
    policy = HostPolicy.for_server("127.0.0.1", [])
    for host in ("localhost", "127.0.0.1", "127.9.9.9", "::1", "app.localhost"):
        assert policy.allows(host), host
    for host in ("attacker.example", "localhost.attacker.example", "10.0.0.1", "fe80::1", "0.0.0.0", "localhostx"):
        assert not policy.allows(host), host


def test_a_server_on_one_address_answers_to_it_and_one_on_every_address_to_any_address() -> None:
    one = HostPolicy.for_server("10.0.0.5", [])
    assert one.allows("10.0.0.5")
    assert not one.allows("10.0.0.6")
    every = HostPolicy.for_server("0.0.0.0", [])
    assert every.allows("10.0.0.6")  # an address cannot be rebound: Kubernetes probes, Prometheus by IP
    assert every.allows("fe80::1")
    assert not every.allows("attacker.example")  # a name needs --allowed-host
    assert HostPolicy.for_server("::", []).allows("192.168.1.2")
    assert HostPolicy.for_server("[::]", []).allows("192.168.1.2")


def test_a_server_bound_to_a_name_answers_to_it() -> None:
    policy = HostPolicy.for_server("box.lan", [])
    assert policy.allows("box.lan")
    assert not policy.allows("other.lan")


def test_allowed_hosts_add_names_patterns_and_addresses() -> None:
    policy = HostPolicy.for_server("127.0.0.1", ["shoal.example", "*.team.example", "192.168.1.9"])
    for host in ("shoal.example", "a.team.example", "b.a.team.example", "192.168.1.9"):
        assert policy.allows(host), host
    for host in ("team.example", "x.shoal.example", "ateam.example", "192.168.1.10"):
        assert not policy.allows(host), host
    assert HostPolicy.for_server("127.0.0.1", ["*"]).allows("anything.example")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8000", ("127.0.0.1", 8000), True),
        ("http://localhost", ("localhost", None), True),
        ("http://localhost", ("localhost", 80), True),
        ("https://shoal.example", ("shoal.example", 443), True),
        ("https://shoal.example", ("shoal.example", 80), False),
        ("http://127.0.0.1:8001", ("127.0.0.1", 8000), False),
        ("http://localhost:8000", ("127.0.0.1", 8000), False),  # another name is another site
        ("http://attacker.example", ("127.0.0.1", 8000), False),
        ("null", ("127.0.0.1", 8000), False),
        ("", ("127.0.0.1", 8000), False),
        ("file://", ("127.0.0.1", 8000), False),
        ("http://127.0.0.1:8000/path", ("127.0.0.1", 8000), False),
        ("http://user@127.0.0.1:8000", ("127.0.0.1", 8000), False),
        ("https://proxy.example", ("127.0.0.1", 8000), True),  # named with --allowed-host: a proxy's name
        ("https://x.team.example:8443", ("127.0.0.1", 8000), True),
    ],
)
def test_a_page_is_the_servers_own_only_on_its_host_and_port_or_a_named_host(
    origin: str, host: tuple[str, int | None], same: bool
) -> None:
    policy = HostPolicy.for_server("127.0.0.1", ["proxy.example", "*.team.example"])
    assert policy.same_site(origin, host) is same


def test_the_star_does_not_make_every_page_the_servers_own() -> None:
    policy = HostPolicy.for_server("127.0.0.1", ["*"])
    assert not policy.same_site("http://attacker.example", ("127.0.0.1", 8000))


@pytest.mark.parametrize("value", ["http://shoal.example", "shoal.example:8000", "shoal.example/x", "*", "a b", ""])
def test_allowed_host_entries_are_names_patterns_or_addresses(value: str) -> None:
    if value == "*":
        assert allowed_host_entry(value) == "*"
        return
    with pytest.raises(ValueError, match="is not a host"):
        allowed_host_entry(value)


def test_allowed_hosts_come_from_flags_or_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerSettings.build(allowed_hosts=["Shoal.Example.", "[::1]"]).allowed_hosts == ["shoal.example", "::1"]
    monkeypatch.setenv("SHOAL_ALLOWED_HOSTS", "a.example, *.b.example")
    assert ServerSettings.build().allowed_hosts == ["a.example", "*.b.example"]
    with pytest.raises(ConfigError, match="allowed_hosts"):
        ServerSettings.build(allowed_hosts=["https://a.example"])


def test_serve_takes_the_new_flags(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from shoal.cli import EXIT_USAGE, main
    from shoal.web import server

    seen: list[ServerSettings] = []
    monkeypatch.setattr(server, "serve", seen.append)
    flags = ["--allowed-host", "a.example", "--allowed-host", "*.b.example", "--max-streams", "3"]
    assert main(["serve", *flags, "--stream-idle-timeout", "30"]) == 0
    [settings] = seen
    assert (settings.allowed_hosts, settings.max_streams, settings.stream_idle_timeout) == (
        ["a.example", "*.b.example"],
        3,
        30.0,
    )
    assert main(["serve", "--stream-idle-timeout", "nan"]) == EXIT_USAGE
    assert main(["serve", "--allowed-host", "http://a.example"]) == EXIT_USAGE
    assert len(seen) == 1
