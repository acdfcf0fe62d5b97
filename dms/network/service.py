"""The trio side of the network layer: one libp2p host with its gossip, bootstrap dialing, bounded
connections, liveness, and the on-demand operations. Everything runs in the bridge's trio thread; the
asyncio side reads `state` (thread-safe) and calls the async methods through the bridge.

Liveness: a connected peer stays in the table while it answers pings on its kept ping stream
(`liveness.py`) and leaves when it stops (within 3 heartbeats) or its last connection closes; a peer
known only by relayed gossip leaves when its record's TTL passes (a few `record_refresh_s`), or at once
when its signed leaving record arrives.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import multiaddr  # type: ignore[import-untyped]  # no stubs; its objects are Any here
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from dms.errors import FieldProblem, InvalidInput
from dms.network import protocols
from dms.network.capacity import STREAM_TIMEOUT_S, CapacityExchange
from dms.network.connections import BYE_PROTOCOL, Trimmer
from dms.network.errors import NetworkError, PeerUnreachable, UnknownPeer
from dms.network.host import DIAL_TIMEOUT_S, as_swarm, build_host, check_ports_free
from dms.network.liveness import Liveness
from dms.network.model import Advert
from dms.network.ratelog import RateLimitedLog
from dms.network.settings import NetworkSettings, is_peer_id
from dms.network.state import NetworkState
from dms.network.streams import TrioLines
from dms.network.sync import SYNC_PROTOCOL, TableSync

if TYPE_CHECKING:  # the trio-typing stubs installed with libp2p shadow trio's own annotations
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

GOSSIPSUB_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
MAX_RELAY_PER_S = 1000.0
"""gossipsub's spam limit counts per relaying peer: a hub forwarding N nodes' records sends N a second."""
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 15.0
GOSSIP_DEGREE = (4, 6, 8)
"""gossipsub mesh degree (low, target, high): each record reaches every node through at most this many
forwards per node, whatever the network's size."""
CONN_EVENT_BUFFER = 1024
ANNOUNCE_DELAY_S = 2.0
"""After our first connection, two gossipsub heartbeats: the new peer is in our mesh by then."""
CLOSE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class StartInfo:
    peer_id: str
    addrs: tuple[str, ...]


def build_gossipsub() -> GossipSub:
    """GossipSub with 0.8.1's defaults fixed for us: a 1 s heartbeat instead of 120 s (new peers join the
    mesh only at a heartbeat), no "adaptive" stretching of it to 30 s+, and a relay limit a hub can meet."""
    return GossipSub(
        GOSSIPSUB_PROTOCOLS,
        degree=GOSSIP_DEGREE[1],
        degree_low=GOSSIP_DEGREE[0],
        degree_high=GOSSIP_DEGREE[2],
        heartbeat_interval=1,
        adaptive_gossip_enabled=False,
        max_messages_per_topic_per_second=MAX_RELAY_PER_S,
    )


class _ConnEvents(INotifee):
    """Hands connection events to our own task: a notifee must not block the swarm."""

    def __init__(self, send: trio.MemorySendChannel[tuple[bool, ID]]) -> None:
        self._send = send

    def _put(self, up: bool, conn: INetConn) -> None:
        try:
            self._send.send_nowait((up, conn.muxed_conn.peer_id))
        except trio.WouldBlock:
            log.warning("connection events are backing up; one was dropped")
        except trio.BrokenResourceError:  # shutting down
            pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._put(True, conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._put(False, conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class P2PService:
    def __init__(self, settings: NetworkSettings, key_pair: KeyPair, version: str) -> None:
        self._settings = settings
        self._key = key_pair
        self._version = version
        self._peer_id = ID.from_pubkey(key_pair.public_key)
        self._hb = settings.heartbeat_s
        self.state = NetworkState(settings.record_ttl_s(), settings.channel)
        self._badlog = RateLimitedLog(log)
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self._exchange: CapacityExchange | None = None
        self._sync: TableSync | None = None
        self._liveness: Liveness | None = None
        self._trimmer: Trimmer | None = None
        self._protected: frozenset[str] = frozenset(a.rsplit("/p2p/", 1)[1] for a in settings.bootstrap_peers)
        self._job_peers: frozenset[str] = frozenset()
        self.protect_source: Callable[[], Awaitable[frozenset[str]]] | None = None
        """Asked for the peers with running jobs whenever a trim is due (set before `serve`)."""
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._handlers: dict[str, Callable[[INetStream], Awaitable[None]]] = {}

    # ----- lifecycle -----

    async def serve(self, *, task_status: TaskStatus[StartInfo] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the host until cancelled; report StartInfo once listening. Startup errors are NetworkErrors."""
        s = self._settings
        check_ports_free(s.listen_addresses)
        host = build_host(s, self._key, self._on_bad_handshake, self._on_refused)
        gossipsub = build_gossipsub()
        pubsub = Pubsub(host, gossipsub)
        exchange = CapacityExchange(
            self.state, self._key, self._version, s.known_channels, s.record_refresh_s, host, pubsub
        )
        self._liveness = Liveness(host, self.state, self._hb, as_swarm(host).close_peer)
        self._trimmer = Trimmer(
            self.state,
            low=s.conn_low,
            high=s.conn_high,
            protected=self._protected_now,
            host=host,
            close_peer=as_swarm(host).close_peer,
            heartbeat_s=self._hb,
        )
        sync = TableSync(host, self.state, exchange)
        host.set_stream_handler(protocols.CAPACITY_PROTOCOL, exchange.on_capacity_stream)
        host.set_stream_handler(SYNC_PROTOCOL, sync.on_sync_stream)
        host.set_stream_handler(BYE_PROTOCOL, self._trimmer.on_bye)
        host.set_stream_handler(protocols.PING_PROTOCOL, self._liveness.serve_ping)
        for protocol, handler in self._handlers.items():
            host.set_stream_handler(TProtocol(protocol), handler)
        events_send, events_recv = trio.open_memory_channel[tuple[bool, ID]](CONN_EVENT_BUFFER)
        host.get_network().register_notifee(_ConnEvents(events_send))
        self._host, self._pubsub, self._exchange, self._sync = host, pubsub, exchange, sync
        listen = [multiaddr.Multiaddr(a) for a in s.listen_addresses]
        async with host.run(listen):
            if len({str(a) for a in host.get_transport_addrs()}) < len(listen):
                raise NetworkError(f"could not listen on all of {', '.join(s.listen_addresses)}")
            async with (
                background_trio_service(pubsub),
                background_trio_service(gossipsub),
                trio.open_nursery() as n,
            ):
                await pubsub.wait_until_ready()
                self._nursery = n
                self.state.set_addrs(tuple(str(a) for a in host.get_addrs()))
                await exchange.set_channel(s.channel, n)
                n.start_soon(self._supervise, "connection events", functools.partial(self._conn_events, events_recv))
                n.start_soon(self._supervise, "publish", exchange.publish_loop)
                n.start_soon(self._supervise, "trim", self._trimmer.run)
                n.start_soon(self._supervise, "maintenance", self._maintenance_loop)
                for addr in s.bootstrap_peers:
                    n.start_soon(self._supervise, f"bootstrap {addr}", functools.partial(self._bootstrap_loop, addr))
                task_status.started(StartInfo(self._peer_id.to_base58(), self.state.addrs()))
                log.info("p2p node %s listening on %s", self._peer_id, ", ".join(self.state.addrs()))
                await trio.sleep_forever()

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of our loops for good: an error restarts it (after a heartbeat) instead of ending the node."""
        while True:
            try:
                await loop()
            except Exception as e:
                if self._closing:  # the host is being torn down under it: expected
                    return
                log.error("the %s loop failed and restarts: %r", name, e, exc_info=e)
                await trio.sleep(self._hb)

    async def close(self) -> None:
        """Close every connection and the listeners; call before cancelling `serve`.

        Cancellation alone leaves sockets open: 0.8.1 closes connections from code that the same
        cancellation interrupts, and then believes them closed. Peers would see us only at process exit.
        """
        if self._exchange is not None and not self._closing:
            await self._exchange.leave()
        self._closing = True
        if self._host is not None:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await self._host.close()
        if self._pubsub is not None:
            self._pubsub.seen_messages.stop()  # a plain thread per Pubsub, left running otherwise

    # ----- advertising (see CapacityExchange) -----

    async def advertise(self, advert: Advert | None) -> None:
        assert self._exchange is not None and self._nursery is not None
        if await self._exchange.advertise(advert, self._nursery):
            self._pull_all()

    async def set_channel(self, channel: str | None) -> None:
        assert self._exchange is not None and self._nursery is not None
        if await self._exchange.set_channel(channel, self._nursery):
            self._pull_all()

    def _pull_all(self) -> None:
        """Ask every connected peer for its table (we just joined a channel)."""
        assert self._sync is not None and self._nursery is not None
        for pid in self.state.connected_ids():
            self._nursery.start_soon(self._sync.pull, ID.from_base58(pid))

    # ----- connections and liveness -----

    async def _conn_events(self, events: trio.MemoryReceiveChannel[tuple[bool, ID]]) -> None:
        assert self._host is not None and self._exchange is not None and self._nursery is not None
        assert self._liveness is not None and self._trimmer is not None and self._sync is not None
        swarm = self._host.get_network()
        async for up, peer in events:
            conns = [c for c in swarm.get_connections(peer) if not c.is_closed]
            addrs = tuple(dict.fromkeys(str(a) for c in conns for a in c.get_transport_addresses()))
            joined = bool(up and conns and not self.state.connected_ids())
            parted = not conns and self._trimmer.peer_down(peer.to_base58())
            dropped = self.state.set_connection(peer.to_base58(), addrs if conns else None, parted=parted)
            if up and conns:
                self._liveness.peer_up(peer, self._nursery)
                self._trimmer.peer_up(peer.to_base58())
                self._nursery.start_soon(self._sync.pull, peer)  # its record, and the ones it knows
                if joined:
                    self._nursery.start_soon(self._exchange.announce_after, ANNOUNCE_DELAY_S)
            elif not conns:
                self._liveness.peer_down(peer)
                why = "; dropped its record" if dropped else " (trimmed; its record stays)" if parted else ""
                log.info("peer %s disconnected%s", peer, why)

    async def _protected_now(self) -> frozenset[str]:
        """Bootstrap peers and the job layer's peers (from `protect_source` when set; the last answer if it fails)."""
        if self.protect_source is not None:
            try:
                self._job_peers = await self.protect_source()
            except Exception as e:
                log.warning("could not ask which peers have running jobs: %r", e)
        return self._protected | self._job_peers

    async def protect(self, peer_ids: frozenset[str]) -> None:
        """The peers the job layer needs connected now (running jobs): never trimmed."""
        self._job_peers = peer_ids

    async def _bootstrap_loop(self, addr: str) -> None:
        """Dial one bootstrap peer at start, and again (with backoff) whenever we have no connection at
        all; otherwise the AutoConnector keeps us between the water marks from the peers we know."""
        assert self._host is not None
        host = self._host
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        swarm = as_swarm(host)
        backoff = BACKOFF_MIN_S
        while True:
            if not self.state.connected_ids():
                # A failed dial puts the peer on a 60 s block list; a restarted peer must be dialled sooner.
                swarm.unblock_peer(info.peer_id)
                try:
                    with trio.fail_after(DIAL_TIMEOUT_S):
                        await host.connect(info)
                    log.info("connected to bootstrap peer %s", addr)
                    backoff = BACKOFF_MIN_S
                except Exception as e:
                    self.state.count("dial_failures")
                    log.debug("bootstrap peer %s: %r; retry in %.1f s", addr, e, backoff)
                    await trio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
            await trio.sleep(self._hb)

    async def _maintenance_loop(self) -> None:
        """Expire the records nobody vouches for and refresh our addresses, once a heartbeat."""
        assert self._host is not None
        host = self._host
        while True:
            await trio.sleep(self._hb)
            gone = self.state.refresh(tuple(str(a) for a in host.get_addrs()))
            for pid in gone:
                log.info("peer %s left: no record for %.1f s", pid, self.state.ttl_s)

    # ----- on demand -----

    def add_handler(self, protocol: str, handler: Callable[[INetStream], Awaitable[None]]) -> None:
        """Serve `protocol` with `handler` (one call per inbound stream). Only before `serve`."""
        if self._host is not None:
            raise NetworkError("protocol handlers are added before the node starts")
        self._handlers[protocol] = handler

    async def open_stream(self, peer_id: str, protocol: str) -> TrioLines:
        """A new `protocol` stream to `peer_id`, dialling it first when needed.

        Raises InvalidInput (not a peer id, or our own), UnknownPeer, PeerUnreachable.
        """
        assert self._host is not None
        self._check_other_peer(peer_id)
        peer = ID.from_base58(peer_id)
        await self._ensure_connected(peer)
        try:
            with trio.fail_after(STREAM_TIMEOUT_S):
                return TrioLines(await self._host.new_stream(peer, [TProtocol(protocol)]))
        except trio.TooSlowError:
            raise PeerUnreachable(f"peer {peer_id} did not open a {protocol} stream in time") from None
        except Exception as e:
            raise PeerUnreachable(f"cannot open a {protocol} stream to {peer_id}: {e or type(e).__name__}") from e

    async def ping(self, peer_id: str) -> float:
        """RTT in seconds to `peer_id`, dialling it first when needed (see P2PNode.ping for the errors)."""
        assert self._host is not None
        self._check_other_peer(peer_id)
        peer = ID.from_base58(peer_id)
        await self._ensure_connected(peer)
        try:
            return await protocols.ping(self._host, peer, STREAM_TIMEOUT_S)
        except trio.TooSlowError:
            raise PeerUnreachable(f"peer {peer_id} did not answer the ping within {STREAM_TIMEOUT_S:.0f} s") from None
        except Exception as e:
            raise PeerUnreachable(f"ping to {peer_id} failed: {e or type(e).__name__}") from e

    def _check_other_peer(self, peer_id: str) -> None:
        if not is_peer_id(peer_id):
            raise InvalidInput.of([FieldProblem("peer_id", f"{peer_id!r} is not a peer id")])
        if peer_id == self._peer_id.to_base58():
            raise InvalidInput.of([FieldProblem("peer_id", "that is this node's own peer id")])

    async def _ensure_connected(self, peer: ID) -> None:
        assert self._host is not None
        host = self._host
        swarm = as_swarm(host)
        if [c for c in swarm.get_connections(peer) if not c.is_closed]:
            return
        record = self.state.record(peer.to_base58())
        addrs = [multiaddr.Multiaddr(a) for a in record.addrs] if record else []
        with contextlib.suppress(PeerStoreError):  # nothing known about it
            addrs += host.get_peerstore().addrs(peer)
        if not addrs:
            raise UnknownPeer(f"no connection to peer {peer} and no address known for it")
        swarm.unblock_peer(peer)
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                await host.connect(PeerInfo(peer, addrs))
        except Exception as e:
            self.state.count("dial_failures")
            raise PeerUnreachable(f"cannot connect to peer {peer}: {e or type(e).__name__}") from e

    # ----- host callbacks -----

    def _on_bad_handshake(self, detail: str) -> None:
        self.state.count("bad_handshakes")
        self._badlog.warning("handshake", "refused an inbound connection that failed the handshake: %s", detail)

    def _on_refused(self, peer: ID) -> None:
        self.state.count("peers_refused")
        self._badlog.warning("refused", "refused peer %s: not in allowed_peers", peer)
