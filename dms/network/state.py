"""What both threads see: the peer table, open connections, RTTs, our addresses and the counters.

The trio side writes, the asyncio side reads snapshots, at any time. One `threading.Lock` guards it all,
held only around plain-Python reads and writes (never across an await), so neither side waits long.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from dms.network.model import CapacityRecord, ConnectedPeer, NetworkMetrics, PeerRecordView
from dms.network.records import PeerTable, RejectReason


class NetworkState:
    """`ttl_s`: how long a record of a peer we are not connected to is kept after it arrives. A connected
    peer stays while its connection answers pings; one that stops answering is marked unresponsive and
    leaves the table's views at once (hidden, until it answers again or its connection is closed)."""

    def __init__(self, ttl_s: float, channel: str | None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._table = PeerTable(ttl_s, channel)
        self._connected: dict[str, tuple[str, ...]] = {}
        self._unresponsive: set[str] = set()
        self._rtt: dict[str, float] = {}
        self._addrs: tuple[str, ...] = ()
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()

    @property
    def ttl_s(self) -> float:
        return self._table.ttl_s

    # ----- snapshots (any thread) -----

    def peers(self) -> list[PeerRecordView]:
        now = self.clock()
        with self._lock:
            keep = self._vouched()
            return [
                PeerRecordView(
                    peer_id=e.record.peer_id,
                    record=e.record,
                    age_s=max(0.0, now - e.received_at),
                    connected=e.record.peer_id in self._connected,
                    rtt_s=self._rtt.get(e.record.peer_id),
                )
                for e in self._table.entries()
                if e.record.peer_id not in self._unresponsive
                and (now - e.received_at <= self._table.ttl_s or e.record.peer_id in keep)
            ]

    def _vouched(self) -> frozenset[str]:
        """Connected peers whose connection answers: their records do not expire. Hold the lock."""
        return frozenset(self._connected.keys() - self._unresponsive)

    def raw_records(self, but: str) -> list[bytes]:
        """The wire form of every current record in the table except `but`'s (for a peer that asks)."""
        with self._lock:
            keep = self._vouched()
            now = self.clock()
            return [
                e.raw
                for e in self._table.entries()
                if e.raw
                and e.record.peer_id != but
                and e.record.peer_id not in self._unresponsive
                and (now - e.received_at <= self._table.ttl_s or e.record.peer_id in keep)
            ]

    def rtts(self) -> dict[str, float]:
        """The latest RTT (seconds) of each connected peer that answered a ping."""
        with self._lock:
            return dict(self._rtt)

    def record(self, peer_id: str) -> CapacityRecord | None:
        with self._lock:
            entry = self._table.get(peer_id)
        return entry.record if entry else None

    def connected(self) -> list[ConnectedPeer]:
        with self._lock:
            return [ConnectedPeer(pid, addrs) for pid, addrs in self._connected.items()]

    def connected_ids(self) -> list[str]:
        with self._lock:
            return list(self._connected)

    def addrs(self) -> tuple[str, ...]:
        with self._lock:
            return self._addrs

    def metrics(self) -> NetworkMetrics:
        with self._lock:
            c = self._counts
            return NetworkMetrics(
                records_accepted=c["records_accepted"],
                records_rejected=dict(self._rejected),
                records_published=c["records_published"],
                bad_streams=c["bad_streams"],
                bad_handshakes=c["bad_handshakes"],
                peers_refused=c["peers_refused"],
                dial_failures=c["dial_failures"],
                connections_trimmed=c["connections_trimmed"],
                peers_unresponsive=c["peers_unresponsive"],
                pings=c["pings"],
                pings_served=c["pings_served"],
                table_syncs=c["table_syncs"],
                peers_connected=len(self._connected),
                peers_known=len(self._table) - sum(1 for pid in self._unresponsive if self._table.get(pid)),
            )

    # ----- updates (trio thread) -----

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def rejected(self, reason: RejectReason) -> None:
        with self._lock:
            self._rejected[reason.value] += 1

    def offer(self, record: CapacityRecord, raw: bytes = b"") -> RejectReason | None:
        """Into the table if acceptable (see PeerTable.offer); counts either way. `raw`: its wire form."""
        with self._lock:
            reason = self._table.offer(record, self.clock(), raw)
            if reason is None:
                self._counts["records_accepted"] += 1
            else:
                self._rejected[reason.value] += 1
        return reason

    def set_channel(self, channel: str | None) -> None:
        with self._lock:
            self._table.set_channel(channel)

    def set_connection(self, peer_id: str, addrs: tuple[str, ...] | None, *, parted: bool = False) -> bool:
        """Record a peer's open connections (None: it has none left, and its record goes too, unless we
        `parted` on purpose: a trimmed connection, whichever side trimmed; then the record stays, for a
        full TTL from now, like one known by gossip).

        Returns True when that dropped a record.
        """
        with self._lock:
            if addrs is not None:
                self._connected[peer_id] = addrs
                return False
            self._connected.pop(peer_id, None)
            self._rtt.pop(peer_id, None)
            was_unresponsive = peer_id in self._unresponsive
            self._unresponsive.discard(peer_id)
            if parted and not was_unresponsive:
                self._table.touch(peer_id, self.clock())
                return False
            return self._table.remove(peer_id)

    def answered(self, peer_id: str, rtt_s: float) -> None:
        """A connected peer answered a ping in `rtt_s` seconds."""
        with self._lock:
            self._counts["pings"] += 1
            if peer_id in self._connected:
                self._rtt[peer_id] = rtt_s

    def answered_again(self, peer_id: str) -> None:
        """A peer marked unresponsive answers again: back in the table's views."""
        with self._lock:
            self._unresponsive.discard(peer_id)

    def unresponsive(self, peer_id: str) -> None:
        """A connected peer stopped answering pings: it leaves the table's views now (and comes back if it
        answers again before its connection is closed)."""
        with self._lock:
            self._counts["peers_unresponsive"] += 1
            self._unresponsive.add(peer_id)
            self._rtt.pop(peer_id, None)

    def refresh(self, addrs: tuple[str, ...]) -> list[str]:
        """Periodic upkeep: our addresses; expire the records nobody vouches for and return their peers."""
        with self._lock:
            self._addrs = addrs
            return self._table.expire(self.clock(), self._vouched())

    def set_addrs(self, addrs: tuple[str, ...]) -> None:
        with self._lock:
            self._addrs = addrs
