"""Liveness of the peers we are connected to, from the connection itself (trio side).

One kept `/ipfs/ping/1.0.0` stream per connected peer, and one 32-byte ping a heartbeat on each connection
between the two sides together: a peer's ping that reaches us proves it alive as well as its answer to ours
does, so each side pings only when it has heard nothing from the other for most of a heartbeat (and at
least every `RTT_EVERY_HB` heartbeats, for its own RTT). In practice one side pings and the other answers:
half the pings of both sides pinging (py-libp2p's own health monitor also opens a new stream per ping).
We serve the ping protocol ourselves (`serve_ping`) to note those arrivals, and keep an idle inbound
stream open (py-libp2p's handler resets a stream after 10 s without a ping).

A peer heard from neither way for `UNRESPONSIVE_HB` heartbeats leaves the table's views at once (the judge
sleeps until that moment); one still silent after `CLOSE_AFTER_HB` heartbeats (at least
`CLOSE_AFTER_MIN_S`) has its connection closed. A hung peer (its process stopped, the TCP connection open)
stops both pinging and answering, so it is caught as before; a peer whose process dies closes its sockets
and leaves on the connection's end.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID

from dms.network import protocols
from dms.network.state import NetworkState

log = logging.getLogger(__name__)

UNRESPONSIVE_HB = 2.5
CLOSE_AFTER_HB = 10.0
CLOSE_AFTER_MIN_S = 10.0
QUIET_HB = 0.75
"""We ping when we have heard nothing from the peer for this many heartbeats."""
RTT_EVERY_HB = 5.0
"""...or when our own RTT to it is this many heartbeats old."""
SERVE_IDLE_S = 600.0
"""An inbound ping stream with no ping for this long is closed (the peer's pinger opens a new one)."""


def should_ping(now: float, heard: float, measured: float | None, heartbeat_s: float) -> bool:
    """Pure: whether to send our ping now, given when we last heard from the peer (its answer or its ping)
    and when we last measured its RTT (None: never)."""
    return now - heard >= QUIET_HB * heartbeat_s or measured is None or now - measured >= RTT_EVERY_HB * heartbeat_s


class Liveness:
    def __init__(
        self, host: IHost, state: NetworkState, heartbeat_s: float, close_peer: Callable[[ID], Awaitable[None]]
    ) -> None:
        self._host = host
        self._state = state
        self._hb = heartbeat_s
        self._close_peer = close_peer
        self._watching: dict[ID, tuple[trio.CancelScope, _Heard]] = {}

    def peer_up(self, peer: ID, nursery: trio.Nursery) -> None:
        """Start watching a newly connected peer (no-op when already watched)."""
        if peer not in self._watching:
            scope, heard = trio.CancelScope(), _Heard(trio.current_time())
            self._watching[peer] = (scope, heard)
            nursery.start_soon(self._watch, peer, scope, heard)

    def peer_down(self, peer: ID) -> None:
        """The peer's last connection closed: stop watching it."""
        watched = self._watching.pop(peer, None)
        if watched is not None:
            watched[0].cancel()

    async def serve_ping(self, stream: INetStream) -> None:
        """`/ipfs/ping/1.0.0`, inbound: echo each 32-byte ping, noting that the peer is alive. Never raises."""
        peer = stream.muxed_conn.peer_id
        try:
            while True:
                with trio.move_on_after(SERVE_IDLE_S):
                    payload = await protocols.read_exactly(stream, protocols.PING_BYTES)
                if payload is None:
                    return  # clean end, or idle for long: the stream goes
                watched = self._watching.get(peer)
                if watched is not None:
                    watched[1].last = trio.current_time()
                self._state.count("pings_served")
                await stream.write(payload)
        except Exception as e:  # reset, the connection closing: the stream is unusable
            log.debug("ping stream from %s ended: %r", peer, e)
        finally:
            await _drop(stream)

    async def _watch(self, peer: ID, scope: trio.CancelScope, heard: _Heard) -> None:
        """Two tasks per peer: the pinger (a ping a heartbeat on the kept stream unless the peer's own ping
        came; each answer awaited for as long as it takes: a late echo on a busy machine is still an answer)
        and the judge (hides the peer after `UNRESPONSIVE_HB` silent heartbeats, closes the connection after
        the close delay)."""
        pid = peer.to_base58()
        with scope:
            try:
                async with trio.open_nursery() as n:
                    n.start_soon(self._pinger, peer, heard)
                    await self._judge(peer, heard)
                    n.cancel_scope.cancel()
            finally:
                if self._watching.get(peer, (None,))[0] is scope:
                    del self._watching[peer]
                log.debug("stopped watching %s", pid)

    async def _pinger(self, peer: ID, heard: _Heard) -> None:
        pid = peer.to_base58()
        stream: INetStream | None = None
        measured: float | None = None
        # Both sides start at the same moment (the connection's), and two pingers in step would each ping before
        # the other's ping arrives, every heartbeat: the side with the smaller peer id shifts by half a heartbeat.
        shift = self._hb / 2 if self._host.get_id().to_bytes() < peer.to_bytes() else 0.0
        try:
            while True:
                started = trio.current_time()
                if should_ping(started, heard.last, measured, self._hb):
                    try:
                        if stream is None:
                            stream = await self._host.new_stream(peer, [protocols.PING_PROTOCOL])
                        rtt = await protocols.ping_on(stream)
                        heard.last = measured = trio.current_time()
                        self._state.answered(pid, rtt)
                    except Exception as e:  # the stream broke (reset, a timeout in the peer's handler): a new one
                        log.debug("ping stream to %s failed: %r", pid, e)
                        await _drop(stream)
                        stream = None
                await trio.sleep_until(started + self._hb + shift)
                shift = 0.0
        finally:
            with trio.CancelScope(shield=True):
                await _drop(stream)

    async def _judge(self, peer: ID, heard: _Heard) -> None:
        """Returns once the connection is closed for silence."""
        pid = peer.to_base58()
        unresponsive_s = UNRESPONSIVE_HB * self._hb
        close_s = max(CLOSE_AFTER_HB * self._hb, CLOSE_AFTER_MIN_S)
        hidden = False
        while True:
            # Wake at the moment the peer would have been silent too long (no polling while it answers), or
            # every quarter heartbeat once hidden, to bring it back as soon as it answers again.
            await trio.sleep_until(trio.current_time() + self._hb / 4 if hidden else heard.last + unresponsive_s)
            silent_s = trio.current_time() - heard.last
            if hidden and silent_s < unresponsive_s:
                hidden = False
                self._state.answered_again(pid)
                log.info("peer %s answers again", pid)
            elif not hidden and silent_s >= unresponsive_s:
                hidden = True
                self._state.unresponsive(pid)
                log.info("peer %s did not answer pings for %.1f s: out of the table", pid, silent_s)
            if silent_s >= close_s:
                log.info("peer %s did not answer pings for %.1f s: closing its connection", pid, silent_s)
                await self._close_peer(peer)
                return


class _Heard:
    """When we last heard from the peer: its answer to our ping, or its own ping."""

    def __init__(self, now: float) -> None:
        self.last = now


async def _drop(stream: INetStream | None) -> None:
    if stream is not None:
        with contextlib.suppress(Exception), trio.move_on_after(1):
            await stream.reset()
