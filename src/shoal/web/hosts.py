"""Host and Origin checks: a server on this machine is no open door for web pages.

Two attacks reach a server through its user's browser. DNS rebinding: a page at
``http://attacker.example:8000`` re-points its name at 127.0.0.1, and its requests then come
here as the page's own, same-origin in the browser's eyes; only the Host header
(attacker.example) gives them away. Cross-site requests: a page posts a form, or a fetch that
needs no permission, to ``http://127.0.0.1:8000``; the Host is right, but the Origin names the
page's site. So every request must name a host this server is meant for, and a request that
changes something must come from one of its own pages, or from no page at all: curl,
`shoal submit` and Prometheus send the server's address and no Origin, and are unaffected.

A Host that is an IP address cannot be rebound (rebinding needs a name the attacker controls),
so a server bound to every interface answers to any address of its own; names need
``--allowed-host``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.web.handlers import SafeJSON

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  #: methods that change nothing here
DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARDS = ("", "0.0.0.0", "::")  #: bind addresses meaning every interface
_AUTHORITY = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?))(?::(?P<port>[0-9]{1,5}))?"
)
_PATTERN = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def split_authority(value: str) -> tuple[str, int | None] | None:
    """(host, port) of a Host header or an Origin's authority: the host lowercased, without a
    trailing dot or brackets; None when the value is not a plain host[:port]."""
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        return None
    port = None if match["port"] is None else int(match["port"])
    if port is not None and port > 65535:
        return None
    if match["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["v6"])), port
        except ValueError:
            return None
    return match["name"].lower().removesuffix("."), port


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def allowed_host_entry(value: str) -> str:
    """An --allowed-host value, normalised: ``*``, a name, ``*.domain``, or an address."""
    entry = value.strip().lower().removesuffix(".")
    if entry == "*":
        return entry
    address = _address(entry.removeprefix("[").removesuffix("]"))
    if address is not None:
        return str(address)
    if not _PATTERN.fullmatch(entry):
        raise ValueError(
            f"{value!r} is not a host: give a name (shoal.example.com), a pattern (*.example.com), "
            "an address, or * (any: unsafe), without scheme or port"
        )
    return entry


@dataclass(frozen=True)
class HostPolicy:
    """The hosts requests may be addressed to, and the sites whose pages may change things."""

    names: frozenset[str] = frozenset()  #: from --allowed-host: names and addresses
    suffixes: tuple[str, ...] = ()  #: ".example.com" for --allowed-host '*.example.com'
    bound: IPAddress | None = None  #: the one address the server listens on, if one
    any_address: bool = False  #: bound to every interface: any address of its own
    any_host: bool = False  #: --allowed-host '*': no Host check at all (unsafe)

    @classmethod
    def for_server(cls, bind: str, allowed: Sequence[str]) -> HostPolicy:
        entries = [allowed_host_entry(value) for value in allowed]
        bind = bind.strip("[]").lower()
        names = {e for e in entries if not e.startswith("*")}
        if bind not in WILDCARDS and _address(bind) is None:
            names.add(bind.removesuffix("."))  # bound to a name: it is meant for that name
        return cls(
            names=frozenset(names),
            suffixes=tuple(e[1:] for e in entries if e.startswith("*.")),
            bound=_address(bind),
            any_address=bind in WILDCARDS,
            any_host="*" in entries,
        )

    def allows(self, host: str) -> bool:
        """Whether a request with this Host (from split_authority) is one this server answers."""
        if self.any_host:
            return True
        address = _address(host)
        if address is not None:
            return address.is_loopback or address == self.bound or self.any_address or self.named(host)
        return host == "localhost" or host.endswith(".localhost") or self.named(host)

    def named(self, host: str) -> bool:
        """Named by the operator: a page there is one of this server's (behind a proxy, say)."""
        return host in self.names or host.endswith(self.suffixes)

    def same_site(self, origin: str, host: tuple[str, int | None]) -> bool:
        """Whether a page at ``origin`` is one of this server's: the same host and port as the
        request's Host, or a host named with --allowed-host."""
        parts = urlsplit(origin)
        authority = split_authority(parts.netloc) if parts.scheme in DEFAULT_PORTS else None
        if authority is None or parts.path or parts.query or parts.fragment:
            return False
        default = DEFAULT_PORTS[parts.scheme]
        if authority[0] == host[0] and (authority[1] or default) == (host[1] or default):
            return True
        return self.named(authority[0])


FLAG_HINT = "start the server with --allowed-host NAME for each name it is reached by"


class HostGate:
    """ASGI middleware: answers 400 to a request for a host this server is not meant for, and
    403 to a change (POST, PUT, PATCH, DELETE) sent from another site's page."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts, origin, fetch_site = _headers(scope)
        refusal = self._refusal(scope, hosts, origin, fetch_site)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await refusal(scope, receive, send)

    def _refusal(self, scope: Scope, hosts: list[str], origin: str | None, fetch_site: str | None) -> SafeJSON | None:
        if len(hosts) != 1:
            return _refuse(400, f"a request needs exactly one Host header, not {len(hosts)}; {FLAG_HINT}")
        host = split_authority(hosts[0])
        if host is None or not self.policy.allows(host[0]):
            return _refuse(
                400,
                f"this server does not answer to Host {hosts[0][:200]!r}: it answers to localhost, 127.0.0.1, "
                f"[::1] and its own addresses; {FLAG_HINT} (a page of another site cannot reach it that way)",
            )
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        if origin is not None and not self.policy.same_site(origin, host):
            return _refuse(
                403,
                f"refused a change sent from another site's page (Origin {origin[:200]!r}): only this server's "
                "own pages may change anything; behind a proxy that rewrites Host, add the browser's name "
                "with --allowed-host NAME",
            )
        if origin is None and fetch_site in ("cross-site", "same-site"):
            return _refuse(403, f"refused a change sent from another site's page (Sec-Fetch-Site: {fetch_site})")
        return None


def _headers(scope: Scope) -> tuple[list[str], str | None, str | None]:
    hosts: list[str] = []
    origin = fetch_site = None
    for key, value in scope["headers"]:
        if key == b"host":
            hosts.append(value.decode("latin-1"))
        elif key == b"origin":
            origin = value.decode("latin-1")
        elif key == b"sec-fetch-site":
            fetch_site = value.decode("latin-1").lower()
    return hosts, origin, fetch_site


def _refuse(status: int, detail: str) -> SafeJSON:
    return SafeJSON({"detail": detail}, status_code=status)
