"""`P2PNode`: the daemon's asyncio handle on the peer-to-peer network.

libp2p and trio are imported only when the node starts (`start()`), so importing this package to use
its types, or running with the network off, costs neither their import time nor their memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dms.errors import DmsError
from dms.network.errors import NetworkError
from dms.network.model import Advert, ConnectedPeer, NetworkMetrics, PeerRecordView
from dms.network.settings import NetworkSettings

if TYPE_CHECKING:
    from dms.network.bridge import TrioThread
    from dms.network.service import P2PService
    from dms.network.streams import NetLineStream

LineHandler = Callable[["NetLineStream"], Coroutine[Any, Any, None]]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


class P2PNode:
    """One libp2p host in its own trio thread, driven from asyncio.

    Lifecycle: `await start()`, then any of the methods below, then `await stop()`. Methods that need
    the running host raise NetworkError("... not running") before start and after stop; `peers()`,
    `metrics` and `addrs` answer from a snapshot and never block on the network.
    """

    def __init__(self, settings: NetworkSettings, *, identity_path: Path, version: str) -> None:
        self._settings = settings
        self._identity_path = identity_path
        self._version = version
        self._thread: TrioThread | None = None
        self._service: P2PService | None = None
        self._peer_id: str | None = None
        self._handlers: dict[str, LineHandler] = {}
        self._advert: Advert | None = None
        self._protect_source: Callable[[], frozenset[str]] | None = None

    def handle(self, protocol: str, handler: LineHandler) -> None:
        """Serve inbound `protocol` streams with `handler`, on the daemon's loop. Call before `start()`.

        The stream is closed when the handler returns; an error in the handler is logged, not raised.
        """
        self._handlers[protocol] = handler

    def protect_from(self, source: Callable[[], frozenset[str]]) -> None:
        """Never trim a connection to a peer that `source()` names (e.g. the peers of our unfinished jobs).

        `source` runs on the daemon's loop, and only when the connection count is above `conn_high` and a
        trim is due, so it is current at that moment. It must not block; if it raises, the last answer stands.
        It replaces `protect()`'s set from then on. May be called before or after `start()`.
        """
        self._protect_source = source
        if self._thread is not None and self._service is not None:
            self._service.protect_source = _asked_on_loop(self._thread, source)

    async def start(self) -> None:
        """Load (or create, mode 0600) the identity, listen, join the channel, start bootstrapping.

        Raises NetworkError with a one-line reason: the identity file is unreadable or not an Ed25519
        key, a listen address is in use or cannot be bound ("listen address /ip4/127.0.0.1/tcp/9000
        is already in use"), or the host failed to start. Nothing is left running after an error.
        """
        if self._thread is not None:
            raise NetworkError("the p2p node was already started")
        from dms.network import lean

        lean.install()  # before libp2p's first import: its QUIC, TLS, relay, ... modules stay unloaded
        from dms.network.bridge import TrioThread
        from dms.network.host import load_or_create_identity
        from dms.network.service import P2PService

        libp2p_log = logging.getLogger("libp2p")
        if not libp2p_log.handlers:  # libp2p turns propagation off on import (unless LIBP2P_DEBUG set it up)
            libp2p_log.propagate = True  # so its warnings reach the daemon's log, not bare stderr
            # ...except this one's INFO chatter on every connection change (it sets its own level to INFO).
            logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)
        key_pair = await asyncio.to_thread(load_or_create_identity, self._identity_path)
        thread = TrioThread()
        service = P2PService(self._settings, key_pair, self._version)
        for protocol, handler in self._handlers.items():
            service.add_handler(protocol, _trio_side(thread, protocol, handler))
        if self._protect_source is not None:
            service.protect_source = _asked_on_loop(thread, self._protect_source)
        await thread.start()
        try:
            info = await thread.start_service(service.serve)
        except DmsError:
            await thread.stop(STOP_TIMEOUT_S)
            raise
        except Exception as e:
            await thread.stop(STOP_TIMEOUT_S)
            raise NetworkError(f"the p2p host failed to start: {e!r}") from e
        self._thread, self._service, self._peer_id = thread, service, info.peer_id

    async def stop(self) -> None:
        """Publish our leaving record (when we advertise), close every connection and end the trio thread
        (waits up to 10 s). Idempotent."""
        if self._thread is not None and self._service is not None and self._thread.running:
            with contextlib.suppress(NetworkError):
                await self._thread.call(self._service.close)
        if self._thread is not None:
            await self._thread.stop(STOP_TIMEOUT_S)
        self._service = None

    def _running(self) -> tuple[TrioThread, P2PService]:
        if self._thread is None or self._service is None or not self._thread.running:
            raise NetworkError("the p2p node is not running")
        return self._thread, self._service

    @property
    def peer_id(self) -> str:
        """This node's peer id (stable across restarts: it comes from the identity file).

        Raises NetworkError before the first start.
        """
        if self._peer_id is None:
            raise NetworkError("the p2p node has not started yet")
        return self._peer_id

    @property
    def addrs(self) -> list[str]:
        """Dialable addresses with the /p2p/<peer id> suffix, ready for another node's bootstrap_peers.

        Wildcard listen addresses come back expanded into the interfaces' addresses. Empty when not running.
        """
        return list(self._service.state.addrs()) if self._service else []

    async def advertise(self, advert: Advert | None) -> None:
        """Publish `advert` as our capacity from now on, signed, on its channel (which becomes ours).

        A change goes out at once (gossip, and pushed to connected peers). None withdraws it (not
        onboarded, or unavailable): we publish a signed leaving record and peers drop ours at once; we
        keep listening on our channel. Raises InvalidInput when the channel is
        not a known one, NetworkError when the node is not running.
        """
        thread, service = self._running()
        await thread.call(functools.partial(service.advertise, advert))
        self._advert = advert

    @property
    def current_advert(self) -> Advert | None:
        """What we advertise now (None: nothing)."""
        return self._advert

    async def set_channel(self, channel: str | None) -> None:
        """Listen on `channel` (None: on none); records of other channels are dropped, and an advert
        on another channel is withdrawn. Raises InvalidInput for an unknown channel, NetworkError when
        the node is not running.
        """
        thread, service = self._running()
        await thread.call(functools.partial(service.set_channel, channel))

    def peers(self) -> list[PeerRecordView]:
        """The peers on our channel whose signed record is current: theirs, its age, and our link to them."""
        return self._service.state.peers() if self._service else []

    async def connected(self) -> list[ConnectedPeer]:
        """The peers with an open connection to us, whatever their channel. Raises NetworkError when not running."""
        _, service = self._running()
        return service.state.connected()

    async def ping(self, peer_id: str) -> float:
        """Round-trip time to `peer_id` in seconds (`/ipfs/ping/1.0.0`), dialling it first if needed.

        Raises InvalidInput (not a peer id, or our own), UnknownPeer (not connected and no address
        known), PeerUnreachable (the dial or the ping failed or timed out, about 10 s at most),
        NetworkError (the node is not running).
        """
        thread, service = self._running()
        return await thread.call(functools.partial(service.ping, peer_id))

    async def protect(self, peer_ids: frozenset[str]) -> None:
        """The peers we must stay connected to now (e.g. those running our jobs, or ours): never trimmed
        when the connection count passes `conn_high`. Each call replaces the last set. NetworkError when
        the node is not running."""
        thread, service = self._running()
        await thread.call(functools.partial(service.protect, peer_ids))

    def rtts(self) -> dict[str, float]:
        """The latest ping RTT (seconds) of each connected peer that answered one; empty when not running."""
        return self._service.state.rtts() if self._service else {}

    async def open_stream(self, peer_id: str, protocol: str) -> NetLineStream:
        """A new line stream to `peer_id` on `protocol`, dialling the peer when needed.

        Raises InvalidInput (not a peer id, or our own), UnknownPeer, PeerUnreachable, NetworkError.
        """
        from dms.network.streams import NetLineStream

        thread, service = self._running()
        lines = await thread.call(functools.partial(service.open_stream, peer_id, protocol))
        return NetLineStream(thread, lines)

    async def open(self, peer_id: str, protocol: str) -> NetLineStream:
        """`open_stream`, under the name the job services' Dialer protocol uses."""
        return await self.open_stream(peer_id, protocol)

    @property
    def metrics(self) -> NetworkMetrics:
        """Counters since start (zeros when not running)."""
        return self._service.state.metrics() if self._service else NetworkMetrics()


def _asked_on_loop(thread: TrioThread, source: Callable[[], frozenset[str]]) -> Callable[[], Awaitable[frozenset[str]]]:
    async def on_loop() -> frozenset[str]:
        return source()

    async def ask() -> frozenset[str]:
        return await thread.call_asyncio(on_loop())

    return ask


def _trio_side(thread: TrioThread, protocol: str, handler: LineHandler) -> Callable[[Any], Awaitable[None]]:
    """The trio stream handler that hands each inbound stream to `handler` on the asyncio loop."""
    from dms.network.streams import NetLineStream, TrioLines

    async def on_stream(stream: Any) -> None:
        lines = TrioLines(stream)
        try:
            await thread.call_asyncio(handler(NetLineStream(thread, lines)))
        except Exception:
            log.exception("handler of %s failed", protocol)
        finally:
            await lines.close()

    return on_stream
