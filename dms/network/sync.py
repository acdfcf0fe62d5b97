"""`/dms/capacity-sync/1.0.0`: a peer's whole table, on request (trio side).

Records are published on change and refreshed only every few minutes, so a node that just connected,
or just joined a channel, would otherwise wait that long for the records of peers it is not connected
to. Instead it asks each peer it connects to (and, on a channel change, each connected peer): the peer
answers with its own fresh record and the records in its table, one line each, exactly as their peers
signed them, then closes. Every line is verified like any other record (signature, signer, freshness,
order, channel); only the rule that a record comes from its own peer is waived, as for gossip relaying.
The answer is bounded: at most `MAX_SYNC_RECORDS` lines of at most `MAX_RECORD_BYTES`, within
`SYNC_TIMEOUT_S`.
"""

from __future__ import annotations

import logging

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from dms.network.capacity import CapacityExchange
from dms.network.errors import StreamClosed
from dms.network.records import MAX_RECORD_BYTES, RejectReason
from dms.network.state import NetworkState
from dms.network.streams import TrioLines

log = logging.getLogger(__name__)

SYNC_PROTOCOL = TProtocol("/dms/capacity-sync/1.0.0")
SYNC_TIMEOUT_S = 10.0
MAX_SYNC_RECORDS = 2000


class TableSync:
    def __init__(self, host: IHost, state: NetworkState, exchange: CapacityExchange) -> None:
        self._host = host
        self._state = state
        self._exchange = exchange

    async def on_sync_stream(self, stream: INetStream) -> None:
        """Answer a peer's request with our record and our table. Never raises."""
        remote = stream.muxed_conn.peer_id
        lines = TrioLines(stream)
        try:
            own = self._exchange.signed_record()
            records = ([own] if own else []) + self._state.raw_records(but=remote.to_base58())
            with trio.fail_after(SYNC_TIMEOUT_S):
                await lines.write(b"".join(r + b"\n" for r in records[:MAX_SYNC_RECORDS]))
        except Exception as e:  # the peer went away, or stopped reading
            log.debug("sending our table to %s failed: %r", remote, e)
        finally:
            await lines.close()

    async def pull(self, peer: ID) -> None:
        """Ask a connected peer for its table and take what is acceptable. Never raises."""
        if not await self._exchange.speaks(peer, SYNC_PROTOCOL):
            return
        taken = 0
        try:
            with trio.fail_after(SYNC_TIMEOUT_S):
                lines = TrioLines(await self._host.new_stream(peer, [SYNC_PROTOCOL]))
        except Exception as e:
            log.debug("cannot ask %s for its table: %r", peer, e)
            return
        try:
            with trio.move_on_after(SYNC_TIMEOUT_S) as scope:
                for _ in range(MAX_SYNC_RECORDS):
                    try:
                        line = await lines.read_line(SYNC_TIMEOUT_S)
                    except StreamClosed:
                        break
                    if len(line) > MAX_RECORD_BYTES:
                        self._state.rejected(RejectReason.OVERSIZE)
                        self._state.count("bad_streams")
                        break
                    if line.strip() and self._exchange.take(line, peer, relayed=True) is None:
                        taken += 1
            if scope.cancelled_caught:
                self._state.count("bad_streams")
        finally:
            await lines.close()
        self._state.count("table_syncs")
        log.debug("took %d records from %s's table", taken, peer)
