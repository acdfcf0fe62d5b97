"""Building the libp2p host: identity, transports, security, the peer allow-list. Runs on the trio side.

Choices (docs/libraries.md, "py-libp2p 0.8.1"): Noise only (libp2p's default list also offers plaintext, in which
a peer may claim any id), yamux only, TCP only; libp2p's health monitor stays off (it opens a stream per
ping: `liveness.py` pings on one kept stream instead); the AutoConnector gets our water marks.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import multiaddr  # type: ignore[import-untyped]  # no stubs; its objects are Any here
import psutil
import trio
from libp2p import new_host
from libp2p.abc import IHost, IRawConnection, ISecureConn
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TMuxerOptions, TProtocol, TSecurityOptions
from libp2p.identity_utils import load_identity, save_identity
from libp2p.network.config import ConnectionConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.exceptions import SecurityUpgradeFailure
from libp2p.transport.tcp.tcp import TCP
from libp2p.transport.upgrader import TransportUpgrader

from dms.network import fastpath
from dms.network.errors import NetworkError
from dms.network.settings import NetworkSettings

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 5.0
"""An inbound connection must finish protocol selection and the Noise handshake within this."""
UPGRADE_TIMEOUT_S = 10.0
STREAM_NEGOTIATION_TIMEOUT_S = 5.0
DIAL_TIMEOUT_S = 5.0
ADDRS_MEMORY_S = 2.0
"""How long the host's advertised addresses are kept before they are built again (`remember_addrs`)."""


def load_or_create_identity(path: Path) -> KeyPair:
    """The node's Ed25519 key from `path`, created (mode 0600) on first start.

    Raises NetworkError when the file exists but is not a usable Ed25519 key: a corrupt or foreign key
    must never be silently replaced, since the peer id is the node's identity on the network.
    """
    if path.exists():
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                log.warning("identity file %s had mode %o; set to 0600", path, mode)
                path.chmod(0o600)
            pair = load_identity(path)
        except (OSError, ValueError) as e:
            raise NetworkError(f"cannot read the p2p identity {path}: {e}") from e
        if pair.private_key.get_type() != KeyType.Ed25519:
            raise NetworkError(f"the p2p identity {path} is not an Ed25519 key")
        return pair
    pair = create_new_key_pair()
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_identity(pair, tmp)  # written with mode 0600
        os.replace(tmp, path)
    except OSError as e:
        raise NetworkError(f"cannot write the p2p identity {path}: {e}") from e
    log.info("created p2p identity %s", path)
    return pair


def _host_port(addr: str) -> tuple[str, int]:
    parts = addr.split("/")  # ["", "ip4", host, "tcp", port]
    return parts[2], int(parts[4])


def check_ports_free(listen_addresses: Iterable[str]) -> None:
    """Raise NetworkError naming the first listen address whose port another socket holds.

    py-libp2p binds with SO_REUSEPORT, so a second daemon on a taken port would start and share it
    silently. A plain bind (SO_REUSEADDR only, to ignore TIME_WAIT left by our own last run) fails
    while any socket listens there, with or without SO_REUSEPORT.
    """
    for addr in listen_addresses:
        host, port = _host_port(addr)
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                reason = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound: {e.strerror}"
                raise NetworkError(f"listen address {addr} {reason}") from e


def interface_addresses() -> tuple[list[str], list[str]]:
    """This machine's IPv4 and IPv6 addresses, non-loopback first (link-local IPv6 left out)."""
    v4: list[ipaddress.IPv4Address] = []
    v6: list[ipaddress.IPv6Address] = []
    for snics in psutil.net_if_addrs().values():
        for snic in snics:
            with contextlib.suppress(ValueError):
                if snic.family == socket.AF_INET:
                    v4.append(ipaddress.IPv4Address(snic.address))
                elif snic.family == socket.AF_INET6:
                    ip6 = ipaddress.IPv6Address(snic.address.split("%")[0])
                    if not ip6.is_link_local:
                        v6.append(ip6)
    return (
        [str(ip) for ip in sorted(set(v4), key=lambda ip: (ip.is_loopback, ip))],
        [str(ip) for ip in sorted(set(v6), key=lambda ip: (ip.is_loopback, ip))],
    )


def expand_wildcards(addrs: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """Replace /ip4/0.0.0.0 and /ip6/:: by the interfaces' addresses, so what we advertise is dialable.

    Used as the host's `addrs_factory`. Loopback addresses are kept only when nothing else exists.
    """
    out: list[str] = []
    for addr in addrs:
        text = str(addr)
        parts = text.split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and parts[2] in ("0.0.0.0", "::"):
            v4, v6 = interface_addresses()
            ips = v4 if parts[1] == "ip4" else v6
            public = [ip for ip in ips if not ipaddress.ip_address(ip).is_loopback]
            for ip in public or ips:
                out.append("/".join([*parts[:2], ip, *parts[3:]]))
        else:
            out.append(text)
    return [multiaddr.Multiaddr(a) for a in dict.fromkeys(out)]


class GatedUpgrader(TransportUpgrader):
    """libp2p's connection upgrader plus the checks 0.8.1 lacks.

    - allow-list: right after the Noise handshake, a connection whose authenticated peer id is not
      allowed is closed, before the muxer and any protocol (identify, gossip...) runs on it.
      (0.8.1's ConnectionGate filters by IP only.)
    - counting: an inbound connection that fails protocol selection or the handshake (a port scanner,
      garbage, plaintext, another PSK) is reported through `on_bad_handshake`, and one that stalls is
      dropped after HANDSHAKE_TIMEOUT_S.
    """

    def __init__(
        self,
        security: TSecurityOptions,
        muxers: TMuxerOptions,
        allowed: frozenset[ID] | None,
        on_bad_handshake: Callable[[str], None],
        on_refused: Callable[[ID], None],
    ) -> None:
        super().__init__(security, muxers)
        self._allowed = allowed
        self._on_bad_handshake = on_bad_handshake
        self._on_refused = on_refused

    async def upgrade_security(
        self, raw_conn: IRawConnection, is_initiator: bool, peer_id: ID | None = None
    ) -> ISecureConn:
        if is_initiator:
            conn = await super().upgrade_security(raw_conn, is_initiator, peer_id)
        else:
            conn = await self._secure_inbound(raw_conn)
        remote = conn.get_remote_peer()
        if self._allowed is not None and remote not in self._allowed:
            with contextlib.suppress(Exception):
                await conn.close()
            self._on_refused(remote)
            raise SecurityUpgradeFailure(f"peer {remote} is not in allowed_peers")
        return conn

    async def _secure_inbound(self, raw_conn: IRawConnection) -> ISecureConn:
        conn: ISecureConn | None = None
        with trio.move_on_after(HANDSHAKE_TIMEOUT_S):
            try:
                conn = await super().upgrade_security(raw_conn, False)
            except Exception as e:  # SecurityUpgradeFailure, and the raw errors 0.8.1 lets through
                self._on_bad_handshake(f"{type(e).__name__}: {e}")
                raise
        if conn is None:
            self._on_bad_handshake(f"no handshake within {HANDSHAKE_TIMEOUT_S:.0f} s")
            raise SecurityUpgradeFailure("handshake timed out")
        return conn


def build_host(
    settings: NetworkSettings,
    key_pair: KeyPair,
    on_bad_handshake: Callable[[str], None],
    on_refused: Callable[[ID], None],
) -> IHost:
    """A libp2p host (not yet listening) with our transport, security and liveness choices."""
    fastpath.apply()  # bulk bytes through Noise and yamux without 0.8.1's per-frame overhead (fastpath.py)
    hb = settings.heartbeat_s
    # yamux, by default in 0.8.1, sends a WINDOW_UPDATE frame after every read that returned data: one more
    # encrypted frame and write for every small message (each ping and its echo). "0" is go-yamux's rule, an
    # update once half the window is consumed (0.8.1 reads this documented knob at call time).
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    security: TSecurityOptions = {
        NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    }
    muxers: TMuxerOptions = {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    config = ConnectionConfig(
        dial_timeout=DIAL_TIMEOUT_S,
        inbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
        outbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
        inbound_stream_protocol_negotiation_timeout=STREAM_NEGOTIATION_TIMEOUT_S,
        outbound_stream_protocol_negotiation_timeout=STREAM_NEGOTIATION_TIMEOUT_S,
        enable_health_monitoring=False,
        # Without water marks the AutoConnector dials every known peer toward (100 + 300) / 2.
        min_connections=1,
        low_watermark=settings.conn_low,
        high_watermark=settings.conn_high,
        max_connections=max_connections(settings.conn_high),
        auto_connect_interval=max(5.0, 2 * hb),
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt=security,
        muxer_opt=muxers,
        transports=[TCP()],
        connection_config=config,
        psk=settings.psk,
        enable_mDNS=settings.mdns,
        addrs_factory=expand_wildcards,
    )
    allowed = frozenset(ID.from_base58(p) for p in settings.allowed_peers) or None
    swarm = as_swarm(host)
    swarm.upgrader = GatedUpgrader(security, muxers, allowed, on_bad_handshake, on_refused)
    # 0.8.1's inbound limiter (max_connections - min_connections slots) is released only when the swarm stops,
    # not when the connection closes: after that many inbound connections in its lifetime a node refuses every
    # new one (a bootstrap hub of 40 nodes took 23 and no more, ever). The live count is still checked against
    # max_connections for every inbound connection; the limiter adds nothing but the leak, so it is unbounded.
    # No public surface sets it (tested: tests/network/test_connections.py).
    swarm._inbound_limiter.total_tokens = math.inf
    remember_addrs(host)
    if settings.mdns:
        mdns_advertises_dialable_addrs(host)
    return host


def remember_addrs(host: IHost, for_s: float = ADDRS_MEMORY_S) -> None:
    """Keep the host's advertised addresses for `for_s` instead of rebuilding them on every call.

    0.8.1 puts our signed peer record in every gossip message it sends or forwards, and checks it against
    `get_addrs()` each time: the interfaces read, the wildcards expanded, each address parsed and given
    its /p2p part. In a burst of jobs that was 6 % of an SP's CPU. Addresses change when interfaces do:
    seconds late is soon enough. An empty answer (not listening yet) is not kept.
    """
    build = host.get_addrs
    kept: tuple[float, list[multiaddr.Multiaddr]] = (-math.inf, [])

    def get_addrs() -> list[multiaddr.Multiaddr]:
        nonlocal kept
        now = time.monotonic()
        if now - kept[0] > for_s:
            addrs = build()
            kept = (now if addrs else -math.inf, addrs)
        return list(kept[1])

    host.get_addrs = get_addrs  # type: ignore[method-assign]  # no public hook caches them


def max_connections(conn_high: int) -> int:
    """Pure: the hard cap on live connections (py-libp2p's `max_connections`, which refuses our own dials too):
    well above the high water mark, so that many peers joining through one bootstrap node at once are let in
    (and trimmed after their grace period) rather than refused."""
    return 4 * conn_high + 32


def mdns_advertises_dialable_addrs(host: IHost) -> None:
    """Make 0.8.1's mDNS announce the expanded listen addresses, as our records do.

    Its broadcaster puts `host.get_transport_addrs()` in the TXT records: the listen address as given,
    `/ip4/0.0.0.0/tcp/9000` with the default config. A peer then dials 0.0.0.0, reaches its own listener,
    fails the Noise handshake (wrong peer id) and never connects (seen in network namespaces).
    """
    mdns = getattr(host, "mDNS", None)
    if mdns is None:
        return

    def resolve() -> list[str]:  # called when the service registers, once the host listens
        return [str(a) for a in expand_wildcards(list(host.get_transport_addrs()))]

    mdns.broadcaster._resolve_host_addrs = resolve


def as_swarm(host: IHost) -> Swarm:
    """The host's network as the concrete Swarm: 0.8.1's interface lacks `unblock_peer` and `upgrader`."""
    network = host.get_network()
    assert isinstance(network, Swarm)
    return network
