"""The values the network layer hands to, and takes from, the rest of the daemon.

Plain frozen dataclasses with no libp2p or trio import, so the web layer and matching can use them
without loading the libp2p stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuOffer:
    vendor: str  # "nvidia" | "amd"
    model: str
    vram_mb: int


@dataclass(frozen=True)
class Advert:
    """What this node offers the network now. The network layer adds identity, addresses, version and time.

    Peers refuse records beyond these limits, so `P2PNode.advertise` refuses them first: amounts >= 0;
    texts up to 256 characters (channel 64); up to 32 executors and 32 GPUs.
    """

    channel: str
    cpu_mhz: int
    cores: float
    memory_mb: int
    disk_mb: int
    """Free disk for jobs' /workspace, MB (what the reservation has left, like cpu_mhz and memory_mb)."""
    ntx_price: int
    """Wei per second per 1,000 MHz of CPU (docs/jobs.md: Price)."""
    payment_addr: str
    executors: tuple[str, ...] = ()
    gpus: tuple[GpuOffer, ...] = ()


@dataclass(frozen=True)
class CapacityRecord:
    """A peer's signed capacity advertisement, as received and verified (or as we publish it)."""

    peer_id: str
    addrs: tuple[str, ...]
    advert: Advert
    dms_version: str
    seq: int
    """Grows with every publication, across restarts too (it starts from the clock in milliseconds)."""
    timestamp_ms: int
    """When the publisher signed it, Unix milliseconds."""
    leaving: bool = False
    """The peer's last will: it stops offering (withdrawn advert, or a clean stop). Receivers drop it at once."""


@dataclass(frozen=True)
class PeerRecordView:
    """One row of the peer table: a peer's latest record and how we see that peer now."""

    peer_id: str
    record: CapacityRecord
    age_s: float
    """Seconds since the record was received."""
    connected: bool
    """A direct connection to the peer is open (records also arrive relayed by gossip)."""
    rtt_s: float | None
    """Latest measured round trip on the direct connection; None when not connected or not measured yet."""


@dataclass(frozen=True)
class ConnectedPeer:
    peer_id: str
    addrs: tuple[str, ...]
    """The remote end of each open connection, as multiaddrs."""


@dataclass(frozen=True)
class NetworkMetrics:
    """Counters since start (gauges: `peers_connected`, `peers_known`), for export to Prometheus."""

    records_accepted: int = 0
    records_rejected: dict[str, int] = field(default_factory=dict)
    """By reason: malformed, oversize, unsigned, bad_signature, peer_id_mismatch, sender_mismatch, stale, ..."""
    records_published: int = 0
    bad_streams: int = 0
    """Streams on our protocols that sent garbage, too much, or nothing in time."""
    bad_handshakes: int = 0
    """Inbound connections that failed protocol or security negotiation (garbage, plaintext, wrong PSK)."""
    peers_refused: int = 0
    """Connections refused because the remote peer id is not in allowed_peers."""
    dial_failures: int = 0
    connections_trimmed: int = 0
    """Connections we closed to stay under the high water mark."""
    peers_unresponsive: int = 0
    """Times a connected peer stopped answering pings and left the table."""
    pings: int = 0
    """Our liveness pings that peers answered (one kept stream per connected peer; see `pings_served`)."""
    pings_served: int = 0
    """Peers' liveness pings we answered (each one also proves the peer alive: we skip ours then)."""
    table_syncs: int = 0
    """Tables taken from peers we connected to (or asked when joining a channel)."""
    peers_connected: int = 0
    peers_known: int = 0
