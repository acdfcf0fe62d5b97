"""Pure rules of the browser boundary: which `Host` names are the daemon's own, which `Origin`s are its own
or allowed, and whether a request could change state. No I/O; the web layer (`dms.api.boundary`) applies them.

Origins are compared as (scheme, host, port), the way browsers build them: `http://127.0.0.1:9999` is the
daemon's own page when the daemon listens on port 9999, whatever string a config file holds.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

# NuNet's dashboards (CPD and SPD), which NuNet's own DMS allows in routes.go.
DASHBOARD_ORIGINS = ("http://localhost:9991", "http://localhost:9992")
DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Origin = tuple[str, str, int]


class BadOrigin(ValueError):
    """Not an origin a browser would send: scheme://host[:port] and nothing else."""


def parse_origin(value: str) -> Origin:
    """`http://LocalHost:9991` -> ('http', 'localhost', 9991); the default port when none is given."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise BadOrigin(f"{value!r} is not an origin: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise BadOrigin(f"{value!r} is not an origin: expected http://host[:port] or https://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise BadOrigin(f"{value!r} is not an origin: it has more than scheme, host and port")
    return scheme, parts.hostname.rstrip(".").lower(), port if port is not None else DEFAULT_PORTS[scheme]


def format_origin(origin: Origin) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" if DEFAULT_PORTS[scheme] == port else f"{scheme}://{shown}:{port}"


def canonical_origin(value: str) -> str:
    """The origin exactly as a browser sends it (lower case, default port left out)."""
    return format_origin(parse_origin(value))


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def is_loopback(addr: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; a wildcard (0.0.0.0, ::) or any other address is not."""
    if addr.strip().lower().rstrip(".") == "localhost":
        return True
    ip = _ip(addr)
    return ip is not None and ip.is_loopback


def split_host(header: str) -> tuple[str, int | None] | None:
    """A `Host` header's name and port: `[::1]:9999` -> ('::1', 9999); None when it cannot be read."""
    try:
        parts = urlsplit("//" + header.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.username or parts.password:
        return None
    return parts.hostname.rstrip(".").lower(), port


@dataclass(frozen=True)
class Boundary:
    """The settings the checks need: the bound address, extra names, allowed origins and the token."""

    bound_addr: str
    hostnames: frozenset[str]
    allowed: frozenset[Origin]
    token: str | None

    @classmethod
    def from_settings(cls, addr: str, hostnames: list[str], allowed_origins: list[str], token: str | None) -> Boundary:
        return cls(addr, frozenset(hostnames), frozenset(parse_origin(o) for o in allowed_origins), token)

    def own_name(self, name: str) -> bool:
        """Whether `name` (from a Host header or an Origin) names this daemon. A DNS-rebinding page reaches
        the daemon under the attacker's host name, which is none of these."""
        name = name.rstrip(".").lower()
        if name == "localhost" or name in self.hostnames:
            return True
        ip = _ip(name)
        if ip is None:
            return False
        bound = _ip(self.bound_addr)
        if bound is not None and bound.is_unspecified:
            return True  # listening everywhere: any address of this machine; an IP literal cannot be rebound
        return ip == bound or (ip.is_loopback and is_loopback(self.bound_addr))

    def host_ok(self, header: str | None) -> bool:
        split = split_host(header) if header else None
        return split is not None and self.own_name(split[0])

    def origin_kind(self, header: str, own_port: int) -> str:
        """'own' (a page this daemon served), 'allowed' (configured, e.g. NuNet's dashboards) or 'foreign'."""
        try:
            origin = parse_origin(header)
        except BadOrigin:
            return "foreign"  # `null` (sandboxed frames, file://) and anything unreadable
        scheme, host, port = origin
        if scheme == "http" and port == own_port and self.own_name(host):
            return "own"
        return "allowed" if origin in self.allowed else "foreign"

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())


def changes_state(method: str, upgrade: str | None) -> bool:
    """Every method but GET/HEAD/OPTIONS, and a websocket upgrade (it carries jobs and payments)."""
    return method.upper() not in SAFE_METHODS or (upgrade or "").lower() == "websocket"


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
