"""Bounded connections: keep the connection count between `conn_low` and `conn_high`.

py-libp2p 0.8.1's AutoConnector dials peerstore peers up to (low + high) / 2 when it is given the water
marks (toward 200 when not); its pruner never prunes a connection with an open stream, and every one of
ours has the kept ping stream, so trimming is ours: above `conn_high` we close the least useful
connections down to (low + high) / 2. Never trimmed: bootstrap peers, peers the job layer protects
(running jobs: asked of the job layer each time a trim is due), connections younger than the grace
period (a dispatch dial, a peer just joining).
`choose_trim` is the pure choice; `Trimmer` the trio loop around it.

A trimmed peer is alive: before closing, the trimmer says so on `/dms/bye/1.0.0` (one line, "trim"), and
both sides keep the other's record after the connection ends (it is then known by gossip, with a TTL),
where a connection that just drops takes the peer's record with it at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from dms.network import protocols
from dms.network.state import NetworkState

log = logging.getLogger(__name__)

GRACE_HB = 10.0
"""A new connection is not trimmed for this many heartbeats."""
BYE_PROTOCOL = TProtocol("/dms/bye/1.0.0")
BYE_TIMEOUT_S = 2.0


def target(low: int, high: int) -> int:
    return (low + high) // 2


@dataclass(frozen=True)
class Conn:
    peer_id: str
    age_s: float
    on_our_channel: bool
    """It sent us a current record on our channel (it matters for matching and relays our gossip)."""
    rtt_s: float | None


def choose_trim(conns: Iterable[Conn], *, low: int, high: int, protected: frozenset[str], grace_s: float) -> list[str]:
    """The peers to disconnect: none while at most `high` connections, else the least useful down to the
    target. Least useful first: not on our channel, then the slowest (unknown RTT counts as slow), then
    the youngest. Protected and young connections are never chosen, even if that leaves us above `high`."""
    conns = list(conns)
    if len(conns) <= high:
        return []
    candidates = [c for c in conns if c.peer_id not in protected and c.age_s >= grace_s]
    candidates.sort(key=lambda c: (c.on_our_channel, -(c.rtt_s if c.rtt_s is not None else 1e9), c.age_s))
    return [c.peer_id for c in candidates[: len(conns) - target(low, high)]]


class Trimmer:
    def __init__(
        self,
        state: NetworkState,
        *,
        low: int,
        high: int,
        protected: Callable[[], Awaitable[frozenset[str]]],
        host: IHost,
        close_peer: Callable[[ID], Awaitable[None]],
        heartbeat_s: float,
    ) -> None:
        self._state = state
        self._low, self._high = low, high
        self._protected = protected
        self._host = host
        self._close_peer = close_peer
        self._interval_s = 2 * heartbeat_s
        self._grace_s = GRACE_HB * heartbeat_s
        self._since: dict[str, float] = {}
        self._parting: set[str] = set()

    def peer_up(self, peer_id: str) -> None:
        self._since.setdefault(peer_id, trio.current_time())

    def peer_down(self, peer_id: str) -> bool:
        """The peer's last connection closed; True when either side trimmed it (the peer is alive)."""
        self._since.pop(peer_id, None)
        parted = peer_id in self._parting
        self._parting.discard(peer_id)
        return parted

    async def on_bye(self, stream: INetStream) -> None:
        """`/dms/bye/1.0.0`: the peer is about to trim our connection. Never raises."""
        peer_id = stream.muxed_conn.peer_id.to_base58()
        try:
            if await protocols.read_line(stream, 16, BYE_TIMEOUT_S) == b"trim":
                self._parting.add(peer_id)
        except protocols.StreamProblem:
            pass
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def trim(self, peer_id: str) -> None:
        """Say bye, then close every connection to `peer_id`."""
        self._parting.add(peer_id)
        peer = ID.from_base58(peer_id)
        with contextlib.suppress(Exception):  # best effort: without it the peer drops our record at once
            await protocols.send_line(self._host, peer, BYE_PROTOCOL, b"trim", BYE_TIMEOUT_S, until_read=True)
        await self._close_peer(peer)

    async def run(self) -> None:
        while True:
            await trio.sleep(self._interval_s)
            now = trio.current_time()
            known = {v.peer_id for v in self._state.peers()}
            rtts = self._state.rtts()
            conns = [
                Conn(pid, now - self._since.get(pid, now), pid in known, rtts.get(pid))
                for pid in self._state.connected_ids()
            ]
            if len(conns) <= self._high:
                continue
            protected = await self._protected()  # asked now: a job that started a moment ago counts
            chosen = choose_trim(conns, low=self._low, high=self._high, protected=protected, grace_s=self._grace_s)
            for pid in chosen:
                log.info("closing the connection to %s: over %d connections", pid, self._high)
                self._state.count("connections_trimmed")
                await self.trim(pid)
