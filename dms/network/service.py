"""The trio side of the network layer: one libp2p host with its gossip and DHT, bootstrap dialing,
connection tracking and liveness, and the on-demand operations. Everything runs in the bridge's trio
thread; the asyncio side reads `state` (thread-safe) and calls the async methods through the bridge.

Liveness: a record expires 2.5 heartbeats after it arrives (`state.record_ttl_s`) and every node
republishes about once a heartbeat, so a silent peer leaves every table within 3 heartbeats whichever
path its records took; a peer whose last direct connection closes leaves at once. Health monitoring
closes connections that stop answering pings.
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
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from dms.errors import FieldProblem, InvalidInput
from dms.network import protocols
from dms.network.capacity import DHT_REPUBLISH_S, DHT_TIMEOUT_S, STREAM_TIMEOUT_S, CapacityExchange
from dms.network.dht import build_dht, dht_key
from dms.network.errors import NetworkError, PeerUnreachable, UnknownPeer
from dms.network.host import DIAL_TIMEOUT_S, as_swarm, build_host, check_ports_free
from dms.network.model import Advert, CapacityRecord
from dms.network.ratelog import RateLimitedLog
from dms.network.records import RecordError, open_record
from dms.network.settings import NetworkSettings, is_peer_id
from dms.network.state import NetworkState
from dms.network.streams import TrioLines

if TYPE_CHECKING:  # the trio-typing stubs installed with libp2p shadow trio's own annotations
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

GOSSIPSUB_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
MAX_RELAY_PER_S = 1000.0
"""gossipsub's spam limit counts per relaying peer: a hub forwarding N nodes' records sends N a second."""
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 15.0
DHT_MAX_AGE_S = 3 * DHT_REPUBLISH_S
"""A DHT record older than this belongs to a peer that stopped publishing (gone, or withdrew its advert)."""
CONN_EVENT_BUFFER = 1024
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
        degree=6,
        degree_low=4,
        degree_high=12,
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
        self.state = NetworkState(settings.heartbeat_s, settings.channel)
        self._badlog = RateLimitedLog(log)
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self._dht: KadDHT | None = None
        self._exchange: CapacityExchange | None = None
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
        dht = build_dht(host)
        exchange = CapacityExchange(self.state, self._key, self._version, s.known_channels, self._hb, host, pubsub, dht)
        host.set_stream_handler(protocols.CAPACITY_PROTOCOL, exchange.on_capacity_stream)
        for protocol, handler in self._handlers.items():
            host.set_stream_handler(TProtocol(protocol), handler)
        events_send, events_recv = trio.open_memory_channel[tuple[bool, ID]](CONN_EVENT_BUFFER)
        host.get_network().register_notifee(_ConnEvents(events_send))
        self._host, self._pubsub, self._dht, self._exchange = host, pubsub, dht, exchange
        listen = [multiaddr.Multiaddr(a) for a in s.listen_addresses]
        async with host.run(listen):
            if len({str(a) for a in host.get_transport_addrs()}) < len(listen):
                raise NetworkError(f"could not listen on all of {', '.join(s.listen_addresses)}")
            async with (
                background_trio_service(pubsub),
                background_trio_service(gossipsub),
                background_trio_service(dht),
                trio.open_nursery() as n,
            ):
                await pubsub.wait_until_ready()
                self._nursery = n
                self.state.set_addrs(tuple(str(a) for a in host.get_addrs()))
                await exchange.set_channel(s.channel, n)
                n.start_soon(self._supervise, "connection events", functools.partial(self._conn_events, events_recv))
                n.start_soon(self._supervise, "publish", exchange.publish_loop)
                n.start_soon(self._supervise, "DHT publish", exchange.dht_publish_loop)
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
        self._closing = True
        if self._host is not None:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await self._host.close()
        if self._pubsub is not None:
            self._pubsub.seen_messages.stop()  # a plain thread per Pubsub, left running otherwise

    # ----- advertising (see CapacityExchange) -----

    async def advertise(self, advert: Advert | None) -> None:
        assert self._exchange is not None and self._nursery is not None
        await self._exchange.advertise(advert, self._nursery)

    async def set_channel(self, channel: str | None) -> None:
        assert self._exchange is not None and self._nursery is not None
        await self._exchange.set_channel(channel, self._nursery)

    # ----- connections and liveness -----

    async def _conn_events(self, events: trio.MemoryReceiveChannel[tuple[bool, ID]]) -> None:
        assert self._host is not None and self._exchange is not None and self._nursery is not None
        swarm = self._host.get_network()
        async for up, peer in events:
            conns = [c for c in swarm.get_connections(peer) if not c.is_closed]
            addrs = tuple(dict.fromkeys(str(a) for c in conns for a in c.get_transport_addresses()))
            dropped = self.state.set_connection(peer.to_base58(), addrs if conns else None)
            if up:
                self._nursery.start_soon(self._exchange.send_record, peer)
                self._nursery.start_soon(self._dht_add, peer)
            elif not conns:
                log.info("peer %s disconnected%s", peer, "; dropped its record" if dropped else "")

    async def _dht_add(self, peer: ID) -> None:
        """Put a new peer in the DHT routing table once identify has told us its listen addresses."""
        assert self._dht is not None and self._exchange is not None
        for _ in range(10):
            await trio.sleep(0.5)
            try:
                added = await self._dht.add_peer(peer)
            except Exception as e:  # the peer left meanwhile
                log.debug("adding %s to the DHT routing table failed: %r", peer, e)
                return
            if added:
                self._exchange.dht_peer_added()
                return
        log.debug("peer %s did not make it into the DHT routing table", peer)

    async def _bootstrap_loop(self, addr: str) -> None:
        """Keep a connection to one bootstrap peer: redial with backoff whenever it is lost."""
        assert self._host is not None
        host = self._host
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        swarm = as_swarm(host)
        backoff = BACKOFF_MIN_S
        while True:
            if not [c for c in swarm.get_connections(info.peer_id) if not c.is_closed]:
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
        """Expire silent peers, refresh RTTs and our addresses, a few times a heartbeat."""
        assert self._host is not None
        host = self._host
        store = host.get_peerstore()
        while True:
            await trio.sleep(max(0.1, self._hb / 4))
            rtt = {pid: store.latency_EWMA(ID.from_base58(pid)) for pid in self.state.connected_ids()}
            gone = self.state.refresh(rtt, tuple(str(a) for a in host.get_addrs()))
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

    async def lookup(self, peer_id: str) -> CapacityRecord | None:
        """A peer's current record: from the table, else from the DHT (see P2PNode.lookup for the errors)."""
        assert self._dht is not None
        self._check_other_peer(peer_id)
        record = self.state.record(peer_id)
        if record is not None:
            return record
        try:
            with trio.fail_after(DHT_TIMEOUT_S):
                value = await self._dht.get_value(dht_key(peer_id))
        except trio.TooSlowError:
            raise NetworkError(f"the DHT did not answer within {DHT_TIMEOUT_S:.0f} s") from None
        if value is None:
            return None
        try:
            record = open_record(value)
        except RecordError as e:  # the DHT validated it already: a bug, or a rule changed
            log.warning("the DHT returned a bad record for %s: %s", peer_id, e)
            return None
        age_s = self.state.clock() - record.timestamp_ms / 1000
        if record.peer_id != peer_id or age_s > DHT_MAX_AGE_S:
            return None
        return record

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
