"""Liveness of the peers we are connected to, from the connection itself (trio side).

One kept `/ipfs/ping/1.0.0` stream per connected peer and one 32-byte ping on it each heartbeat (the
protocol allows many pings per stream; py-libp2p's own health monitor opens a new stream for every
ping, which costs more than the ping). A peer that has not answered for `UNRESPONSIVE_HB` heartbeats
leaves the table's views at once (3 x heartbeat at the latest, counting the sweep); one still silent
after `CLOSE_AFTER_HB` heartbeats (at least `CLOSE_AFTER_MIN_S`) has its connection closed. Each
answer also gives the peer's RTT.
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


class Liveness:
    def __init__(
        self, host: IHost, state: NetworkState, heartbeat_s: float, close_peer: Callable[[ID], Awaitable[None]]
    ) -> None:
        self._host = host
        self._state = state
        self._hb = heartbeat_s
        self._close_peer = close_peer
        self._watching: dict[ID, trio.CancelScope] = {}

    def peer_up(self, peer: ID, nursery: trio.Nursery) -> None:
        """Start watching a newly connected peer (no-op when already watched)."""
        if peer not in self._watching:
            scope = trio.CancelScope()
            self._watching[peer] = scope
            nursery.start_soon(self._watch, peer, scope)

    def peer_down(self, peer: ID) -> None:
        """The peer's last connection closed: stop watching it."""
        scope = self._watching.pop(peer, None)
        if scope is not None:
            scope.cancel()

    async def _watch(self, peer: ID, scope: trio.CancelScope) -> None:
        """Two tasks per peer: the pinger (one ping a heartbeat on the kept stream, each answer awaited for as
        long as it takes: a late echo on a busy machine is still an answer) and the judge (hides the peer after
        `UNRESPONSIVE_HB` silent heartbeats, closes the connection after the close delay)."""
        pid = peer.to_base58()
        silence = _Silence(trio.current_time())
        with scope:
            try:
                async with trio.open_nursery() as n:
                    n.start_soon(self._pinger, peer, silence)
                    await self._judge(peer, silence)
                    n.cancel_scope.cancel()
            finally:
                if self._watching.get(peer) is scope:
                    del self._watching[peer]
                log.debug("stopped watching %s", pid)

    async def _pinger(self, peer: ID, silence: _Silence) -> None:
        pid = peer.to_base58()
        stream: INetStream | None = None
        try:
            while True:
                started = trio.current_time()
                try:
                    if stream is None:
                        stream = await self._host.new_stream(peer, [protocols.PING_PROTOCOL])
                    rtt = await protocols.ping_on(stream)
                    silence.last_ok = trio.current_time()
                    self._state.answered(pid, rtt)
                except Exception as e:  # the stream broke (reset, a timeout in the peer's handler): a new one
                    log.debug("ping stream to %s failed: %r", pid, e)
                    await _drop(stream)
                    stream = None
                await trio.sleep_until(started + self._hb)
        finally:
            with trio.CancelScope(shield=True):
                await _drop(stream)

    async def _judge(self, peer: ID, silence: _Silence) -> None:
        """Returns once the connection is closed for silence."""
        pid = peer.to_base58()
        unresponsive_s = UNRESPONSIVE_HB * self._hb
        close_s = max(CLOSE_AFTER_HB * self._hb, CLOSE_AFTER_MIN_S)
        hidden = False
        while True:
            await trio.sleep(self._hb / 4)
            silent_s = trio.current_time() - silence.last_ok
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


class _Silence:
    def __init__(self, now: float) -> None:
        self.last_ok = now


async def _drop(stream: INetStream | None) -> None:
    if stream is not None:
        with contextlib.suppress(Exception), trio.move_on_after(1):
            await stream.reset()
