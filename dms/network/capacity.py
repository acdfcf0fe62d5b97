"""The capacity exchange (trio side): our signed record out, the peers' records in.

Out: by gossip on `/dms/<channel>/capacity` when the advert changes (never more than once a second) and
otherwise once every `record_refresh_s` (jittered), so an idle network carries almost no records; straight
to every newly connected peer on `/dms/capacity/1.0.0`. Each publication gets a new seq and timestamp.
When we stop offering (advert withdrawn, channel left, clean stop) we publish a signed leaving record,
our last will, and peers drop us at once instead of at the record's TTL.

In: every record, from gossip or a stream, is verified (`records.open_record`), must name the peer that
signed the message carrying it, and goes through the peer table's freshness, order and channel rules.
Gossip is relayed only when we kept the record, so garbage stops at the first honest node.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random

import multiaddr  # type: ignore[import-untyped]  # no stubs; its objects are Any here
import trio
from libp2p.abc import IHost, INetStream, ISubscriptionAPI
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from dms.errors import FieldProblem, InvalidInput
from dms.network import protocols
from dms.network.model import Advert, CapacityRecord
from dms.network.ratelog import RateLimitedLog
from dms.network.records import MAX_RECORD_BYTES, RecordError, RejectReason, next_seq, open_record, sign_record
from dms.network.state import NetworkState

log = logging.getLogger(__name__)

MIN_PUBLISH_INTERVAL_S = 1.0
"""At most one gossip message a second per node."""
STREAM_TIMEOUT_S = 5.0
IDENTIFY_WAIT_S = 2.0
LEAVE_TIMEOUT_S = 1.0
"""How long a clean stop waits for its leaving record to go out."""


def topic_for(channel: str) -> str:
    return f"/dms/{channel}/capacity"


class CapacityExchange:
    def __init__(
        self,
        state: NetworkState,
        key_pair: KeyPair,
        version: str,
        known_channels: tuple[str, ...],
        refresh_s: float,
        host: IHost,
        pubsub: Pubsub,
    ) -> None:
        self._state = state
        self._key = key_pair
        self._peer_id = ID.from_pubkey(key_pair.public_key)
        self._version = version
        self._known_channels = known_channels
        self._refresh_s = refresh_s
        self._host, self._pubsub = host, pubsub
        self._badlog = RateLimitedLog(log)
        self._advert: Advert | None = None
        self._seq = 0
        self._topic: str | None = None
        self._reader: trio.CancelScope | None = None
        self._wake = trio.Event()
        self._changed = False
        self._leave: Advert | None = None
        """The advert we stopped offering, whose leaving record is still to be published."""

    # ----- what we offer -----

    async def advertise(self, advert: Advert | None, nursery: trio.Nursery) -> bool:
        """Publish `advert` from now on (None: stop); its channel becomes ours. True when that joined a channel.

        InvalidInput: an unknown channel, or an advert that peers would refuse (too big, negative amounts).
        """
        joined = False
        if advert is not None:
            try:  # the round trip every receiver makes
                open_record(self._sign(advert))
            except RecordError as e:
                raise InvalidInput.of([FieldProblem("advert", e.detail)]) from None
            joined = await self.set_channel(advert.channel, nursery)
        elif self._advert is not None:
            self._leave = self._advert
        self._advert = advert
        self._changed = True
        self._wake.set()
        return joined

    async def set_channel(self, channel: str | None, nursery: trio.Nursery) -> bool:
        """Listen (and publish) on `channel`; drop records of other channels. True when that joined a
        channel (the caller then asks the connected peers for their tables). InvalidInput: unknown channel."""
        if channel is not None and channel not in self._known_channels:
            known = ", ".join(self._known_channels)
            raise InvalidInput.of([FieldProblem("channel", f"{channel!r} is not one of {known}")])
        topic = topic_for(channel) if channel else None
        if topic == self._topic:
            return False
        if self._topic is not None and self._advert is not None:  # our last will on the channel we leave
            await self._publish_leaving(self._topic, self._advert)
        if self._topic is not None:
            assert self._reader is not None
            self._reader.cancel()
            self._pubsub.remove_topic_validator(self._topic)
            await self._pubsub.unsubscribe(self._topic)
        self._state.set_channel(channel)
        self._topic = topic
        if self._advert is not None and self._advert.channel != channel:
            self._advert = None
        if topic is not None:
            self._pubsub.set_topic_validator(topic, self._validate_gossip, False)
            subscription = await self._pubsub.subscribe(topic)
            self._reader = trio.CancelScope()
            nursery.start_soon(self._drain, subscription, self._reader)
        log.info("p2p channel is now %s", channel)
        return topic is not None

    @staticmethod
    async def _drain(subscription: ISubscriptionAPI, scope: trio.CancelScope) -> None:
        """Empty the subscription queue: the topic validator took the records in already."""
        with scope, contextlib.suppress(trio.EndOfChannel, trio.ClosedResourceError):  # pubsub is stopping
            while True:
                await subscription.get()

    def signed_record(self) -> bytes | None:
        """A fresh signed record of our advert (None: nothing to offer); every call takes a new seq."""
        return None if self._advert is None else self._sign(self._advert)

    def _sign(self, advert: Advert, *, leaving: bool = False) -> bytes:
        now_ms = int(self._state.clock() * 1000)
        self._seq = next_seq(self._seq, now_ms)
        addrs = tuple(a.rsplit("/p2p/", 1)[0] for a in self._state.addrs())
        record = CapacityRecord(self._peer_id.to_base58(), addrs, advert, self._version, self._seq, now_ms, leaving)
        return sign_record(record, self._key.private_key)

    async def publish_loop(self) -> None:
        """Publish on change (at most once a second) and every `refresh_s` (jittered) otherwise. A change
        also goes straight to every connected peer: gossip alone misses a peer whose subscription we
        have not yet seen (a channel just joined, ours or theirs)."""
        last = -math.inf
        while True:
            with trio.move_on_after(self._refresh_s * random.uniform(0.8, 1.0)):
                await self._wake.wait()
            changed, self._changed = self._changed, False
            self._wake = trio.Event()
            await trio.sleep(max(0.0, last + MIN_PUBLISH_INTERVAL_S - trio.current_time()))
            topic, leave = self._topic, self._leave
            self._leave = None
            if topic is None:
                continue
            if self._advert is not None:
                data = self._sign(self._advert)
            elif leave is not None and topic == topic_for(leave.channel):
                data = self._sign(leave, leaving=True)
            else:
                continue
            last = trio.current_time()
            await self._publish(topic, data)
            if changed:
                async with trio.open_nursery() as n:
                    for pid in self._state.connected_ids():
                        n.start_soon(self._push, ID.from_base58(pid), data)

    async def announce_after(self, delay_s: float) -> None:
        """Publish our record by gossip once more, `delay_s` from now: we just joined the network (our first
        connection), and the one we joined through has our record from its sync but cannot relay it, while
        our own publications so far had nobody to go to. By then gossipsub has put the peer in our mesh."""
        await trio.sleep(delay_s)
        self._wake.set()

    async def _push(self, peer: ID, data: bytes) -> None:
        try:
            await protocols.send_line(self._host, peer, protocols.CAPACITY_PROTOCOL, data, STREAM_TIMEOUT_S)
        except Exception as e:  # it left meanwhile, or does not speak the protocol
            log.debug("could not push our record to %s: %r", peer, e)

    async def _publish(self, topic: str, data: bytes) -> None:
        try:
            with trio.fail_after(STREAM_TIMEOUT_S):
                await self._pubsub.publish(topic, data)
            self._state.count("records_published")
        except Exception as e:  # a failed round must not end publishing
            self._badlog.warning("publish", "publishing our capacity record failed: %r", e)

    async def _publish_leaving(self, topic: str, advert: Advert) -> None:
        with trio.move_on_after(LEAVE_TIMEOUT_S) as scope:
            await self._publish(topic, self._sign(advert, leaving=True))
            # publish() only queues it per peer: let the sending tasks write it before the host closes
            while any(len(q) for q in self._pubsub.peer_queues.values()):  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.01)
            await trio.sleep(0.05)  # the last write, taken off its queue, on its way through yamux and Noise
        log.info("published our leaving record on %s%s", topic, " (timed out)" if scope.cancelled_caught else "")

    async def leave(self) -> None:
        """Before a clean stop: publish our last will (when we offer anything), so peers drop us at once."""
        if self._topic is not None and self._advert is not None:
            await self._publish_leaving(self._topic, self._advert)

    async def speaks(self, peer: ID, protocol: str) -> bool:
        """Whether a newly connected peer speaks `protocol`, once identify says (True when it never does).

        0.8.1 logs a failed protocol negotiation as a multi-line ERROR: ask before opening.
        """
        store = self._host.get_peerstore()
        spoken: list[str] = []
        with trio.move_on_after(IDENTIFY_WAIT_S):
            while not spoken:
                await trio.sleep(0.05)
                with contextlib.suppress(PeerStoreError):
                    spoken = store.get_protocols(peer)
        if spoken and protocol not in spoken:
            log.debug("peer %s does not speak %s", peer, protocol)
            return False
        return True

    # ----- what peers offer -----

    def take(self, data: bytes, sender: ID, *, relayed: bool = False) -> RejectReason | None:
        """Verify a record from `sender` and keep it. Unless `relayed` (a table handed on by a peer that
        we asked, `sync.py`), `sender` must be the record's own peer (the one that signed the message or
        opened the stream carrying it).

        None when kept, else why not (counted, and logged at a sane rate when hostile).
        """
        try:
            record = open_record(data)
            if not relayed and record.peer_id != sender.to_base58():
                raise RecordError(RejectReason.SENDER_MISMATCH, f"a record of {record.peer_id}")
        except RecordError as e:
            self._state.rejected(e.reason)
            self._log_reject(e.reason, sender, e.detail)
            return e.reason
        reason = self._state.offer(record, data)
        if reason is not None:
            self._log_reject(reason, sender, f"seq {record.seq}")
        elif not record.leaving:
            self._learn_addrs(record)
        return reason

    def _learn_addrs(self, record: CapacityRecord) -> None:
        """Where a peer can be dialled, for the AutoConnector (connections between the water marks)."""
        peer = ID.from_base58(record.peer_id)
        store = self._host.get_peerstore()
        with contextlib.suppress(PeerStoreError):
            if store.addrs(peer):
                return
        addrs = []
        for a in record.addrs:
            with contextlib.suppress(Exception):  # a signed but undialable address: skip it
                addrs.append(multiaddr.Multiaddr(a))
        if addrs:
            store.add_addrs(peer, addrs, int(self._state.ttl_s))

    def _log_reject(self, reason: RejectReason, sender: ID, detail: str) -> None:
        if reason.is_hostile:
            self._badlog.warning(reason.value, "dropped a capacity record from %s: %s: %s", sender, reason, detail)
        else:
            log.debug("dropped a capacity record from %s: %s: %s", sender, reason, detail)

    def _validate_gossip(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """gossipsub topic validator: take the record in; relay it only when we kept it.

        pubsub has already checked that the message is signed by its originator (`from_id`), which is
        therefore the peer the record must name.
        """
        try:
            origin = ID(msg.from_id)
            if origin == self._peer_id:
                return True  # our own publication on its way out
            # Relay what we kept, and also a copy of what we hold already (it may have reached us first
            # by a direct stream); gossipsub's seen-cache stops the copies going round.
            return self.take(msg.data, origin) in (None, RejectReason.NOT_NEWER)
        except Exception as e:  # never let an error escape into pubsub's reader for this peer
            log.error("the gossip validator failed: %r", e, exc_info=e)
            return False

    async def on_capacity_stream(self, stream: INetStream) -> None:
        """Stream handler for `/dms/capacity/1.0.0`: one record per stream. Never raises (an error here
        would take the whole connection down)."""
        remote = stream.muxed_conn.peer_id
        try:
            line = await protocols.read_line(stream, MAX_RECORD_BYTES, STREAM_TIMEOUT_S)
        except protocols.StreamProblem as e:
            if e.reason == "empty":  # a sender that gave up (it left, or timed out): not hostile
                log.debug("empty capacity stream from %s", remote)
            else:
                self._state.count("bad_streams")
                if e.reason == "oversize":
                    self._state.rejected(RejectReason.OVERSIZE)
                    self._log_reject(RejectReason.OVERSIZE, remote, e.detail)
                else:
                    self._badlog.warning(f"stream-{e.reason}", "bad capacity stream from %s: %s", remote, e)
            await self._end(stream, reset=True)
            return
        reason = self.take(line, remote)
        if reason is not None and reason.is_hostile:
            self._state.count("bad_streams")
        await self._end(stream, reset=reason is not None)

    @staticmethod
    async def _end(stream: INetStream, *, reset: bool) -> None:
        try:
            await (stream.reset() if reset else stream.close())
        except Exception as e:  # already gone
            log.debug("ending a capacity stream failed: %r", e)
