"""What the network layer is configured with, checked once before anything starts.

Kept free of libp2p and trio imports: the rest of the daemon builds these settings without paying for
(or depending on) the libp2p stack. Addresses are checked by shape here; libp2p parses them again later.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dms.errors import FieldProblem, InvalidInput

KNOWN_CHANNELS = ("nunet-staging", "nunet-test", "nunet-team", "nunet-edge")

_LISTEN = re.compile(r"^/(ip4|ip6)/([^/]+)/tcp/(\d{1,5})$")
_BOOTSTRAP = re.compile(r"^/(ip4|ip6|dns|dns4|dns6)/([^/]+)/tcp/(\d{1,5})/p2p/([^/]+)$")
_PSK = re.compile(r"^[0-9a-fA-F]{64}$")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58decode(text: str) -> bytes | None:
    """Bitcoin-alphabet base58 (the peer id text form); None when `text` is not base58."""
    n = 0
    for ch in text:
        digit = _B58.find(ch)
        if digit < 0:
            return None
        n = n * 58 + digit
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def is_peer_id(text: str) -> bool:
    """True when `text` is a base58 libp2p peer id (identity multihash of a key, or sha2-256 of one).

    libp2p's own `ID.from_base58` accepts any base58 text ("abc"), so a typo in a config would only
    show up as a peer that never connects.
    """
    raw = _b58decode(text)
    if raw is None or len(raw) < 3 or raw[1] != len(raw) - 2:
        return False
    return (raw[0] == 0x00 and len(raw) <= 44) or (raw[0] == 0x12 and raw[1] == 32)


def _ip_ok(proto: str, host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == (4 if proto == "ip4" else 6)


def _port_ok(port: str, *, allow_zero: bool) -> bool:
    return (0 if allow_zero else 1) <= int(port) <= 65535


@dataclass(frozen=True)
class NetworkSettings:
    """The p2p part of the configuration, as the network layer needs it.

    `channel` is the channel the node is onboarded on (None: not onboarded); it decides the gossip topic
    the node listens and publishes on, and can change at runtime (`P2PNode.advertise`, `set_channel`).
    `heartbeat_s` is the one liveness interval: a peer that stops answering leaves the peer table
    within 3 x heartbeat_s. `allowed_peers` empty means any peer may connect.

    `record_refresh_s`: our capacity record is published when it changes and re-published this often
    otherwise; a record is kept `record_ttl_s()` after it arrives unless its peer is connected to us (a
    connected peer's liveness comes from the connection). `conn_low` / `conn_high`: the connection count
    is kept between these water marks (more peers are reached by gossip relaying, not by connections).

    `psk` (64 hex digits) turns on py-libp2p's private-network protector. Beware: py-libp2p 0.8.1's PSK
    (Salsa20 with an 8-byte nonce, key given as hex) is NOT wire-compatible with go-libp2p or js-libp2p
    private networks (XSalsa20, 24-byte nonce, `swarm.key` file); only py-libp2p nodes can join.
    """

    listen_addresses: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/9000",)
    bootstrap_peers: tuple[str, ...] = ()
    mdns: bool = False
    channel: str | None = None
    known_channels: tuple[str, ...] = KNOWN_CHANNELS
    heartbeat_s: float = 2.0
    psk: str | None = None
    allowed_peers: tuple[str, ...] = ()
    record_refresh_s: float = 120.0
    conn_low: int = 3
    conn_high: int = 5

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidInput.of(problems)

    def record_ttl_s(self) -> float:
        """How long a record is kept after it arrives: two refreshes may be lost before a live peer expires."""
        return 2.5 * self.record_refresh_s + self.heartbeat_s

    def problems(self) -> list[FieldProblem]:
        """Everything wrong with these settings; empty when they can be used."""
        out: list[FieldProblem] = []
        if not self.listen_addresses:
            out.append(FieldProblem("listen_addresses", "at least one listen address is needed"))
        for i, addr in enumerate(self.listen_addresses):
            m = _LISTEN.match(addr)
            if not m or not _ip_ok(m[1], m[2]) or not _port_ok(m[3], allow_zero=True):
                out.append(
                    FieldProblem(f"listen_addresses[{i}]", f"{addr!r} is not /ip4|ip6/<address>/tcp/<port> (TCP only)")
                )
        for i, addr in enumerate(self.bootstrap_peers):
            m = _BOOTSTRAP.match(addr)
            if (
                not m
                or (m[1] in ("ip4", "ip6") and not _ip_ok(m[1], m[2]))
                or not _port_ok(m[3], allow_zero=False)
                or not is_peer_id(m[4])
            ):
                out.append(
                    FieldProblem(
                        f"bootstrap_peers[{i}]", f"{addr!r} is not /ip4|ip6|dns/<host>/tcp/<port>/p2p/<peer id>"
                    )
                )
        if not self.known_channels:
            out.append(FieldProblem("known_channels", "at least one channel is needed"))
        if self.channel is not None and self.channel not in self.known_channels:
            out.append(FieldProblem("channel", f"{self.channel!r} is not one of {', '.join(self.known_channels)}"))
        if not 0 < self.heartbeat_s <= 60:
            out.append(FieldProblem("heartbeat_s", f"{self.heartbeat_s} is not in (0, 60] seconds"))
        if not 1 <= self.record_refresh_s <= 86_400:
            out.append(FieldProblem("record_refresh_s", f"{self.record_refresh_s} is not in [1, 86400] seconds"))
        if not 1 <= self.conn_low <= self.conn_high <= 10_000:
            out.append(
                FieldProblem(
                    "conn_high", f"need 1 <= conn_low <= conn_high <= 10000, not {self.conn_low}, {self.conn_high}"
                )
            )
        if self.psk is not None and not _PSK.match(self.psk):
            out.append(FieldProblem("psk", "must be 64 hex digits (a 32-byte key)"))
        for i, pid in enumerate(self.allowed_peers):
            if not is_peer_id(pid):
                out.append(FieldProblem(f"allowed_peers[{i}]", f"{pid!r} is not a peer id"))
        return out
