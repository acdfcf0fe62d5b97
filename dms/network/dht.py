"""Capacity records in the Kademlia DHT, for lookup by peer id (a peer outside our gossip, another channel).

Keys are `/dms/<40 hex digits of sha256(peer id)>` (45 bytes): py-libp2p 0.8.1 ignores FIND_NODE requests
whose key is over 50 bytes and not a multihash, so `/dms/<peer id>` (57 bytes) would only ever be found
on the peers we already talk to. Every stored value must be a valid signed record under its own key
(`RecordValidator`), and the DHT runs with strict validation, so peers cannot park arbitrary data with us.
"""

from __future__ import annotations

import hashlib
import logging

from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.kad_dht import logger as kad_logger
from libp2p.records.validator import Validator

from dms.network.records import RecordError, open_record

NAMESPACE = "dms"


def dht_key(peer_id: str) -> str:
    return f"/{NAMESPACE}/{hashlib.sha256(peer_id.encode()).hexdigest()[:40]}"


class RecordValidator(Validator):
    def validate(self, key: str, value: bytes) -> None:
        """Raises RecordError for a bad record, ValueError for a record stored under another peer's key."""
        record = open_record(value)
        if key != dht_key(record.peer_id):
            raise ValueError(f"the record of {record.peer_id} is not stored under its key")

    def select(self, key: str, values: list[bytes]) -> int:
        """Index of the newest (highest seq) valid record; invalid ones never win."""
        best, best_seq = 0, -1
        for i, value in enumerate(values):
            try:
                seq = open_record(value).seq
            except RecordError:
                continue
            if seq > best_seq:
                best, best_seq = i, seq
        return best


class _CleanEndIsNotAWarning(logging.Filter):
    """0.8.1 logs "Failed to read DHT message from stream" at WARNING whenever a peer ends a DHT stream
    normally (an EOFError), i.e. after every query. Keep the real read failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            record.msg == "Failed to read DHT message from stream: %s" and args and isinstance(args[0], EOFError)
        )


def build_dht(host: IHost) -> KadDHT:
    if not any(isinstance(f, _CleanEndIsNotAWarning) for f in kad_logger.filters):
        kad_logger.addFilter(_CleanEndIsNotAWarning())
    dht = KadDHT(host, DHTMode.SERVER, strict_validation=True)
    dht.register_validator(NAMESPACE, RecordValidator())
    return dht
