"""Capacity records on the wire, and the table of the peers' latest ones. Pure: no I/O, no clock.

Wire form (one line of JSON, at most `MAX_RECORD_BYTES`)::

    {"key": <base64 libp2p PublicKey protobuf>, "payload": <canonical JSON text>, "sig": <base64>}

The signature covers `SIGNING_PREFIX + payload` exactly as sent, so no receiver ever re-encodes
before verifying. The payload is canonical JSON (sorted keys, no spaces, ASCII) with the price as a
decimal string, since wei amounts overflow the doubles other JSON readers use.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import Any

from libp2p.crypto.keys import PrivateKey, PublicKey
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID

from dms import boundedjson
from dms.network.model import Advert, CapacityRecord, GpuOffer

RECORD_VERSION = 1
MAX_RECORD_BYTES = 8 * 1024
SIGNING_PREFIX = b"dms-capacity-record:"
CLOCK_SKEW_S = 5.0
"""Allowed difference between the publisher's clock and ours when judging a record's age."""
MAX_PEERS = 10_000

_MAX_TEXT = 256
_MAX_LIST = 32


class RejectReason(enum.StrEnum):
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    PEER_ID_MISMATCH = "peer_id_mismatch"
    """The key that signed is not the key of the peer id the record names."""
    SENDER_MISMATCH = "sender_mismatch"
    """A valid record, but not from the peer that sent or originated the message."""
    STALE = "stale"
    FUTURE = "future"
    NOT_NEWER = "not_newer"
    WRONG_CHANNEL = "wrong_channel"
    TABLE_FULL = "table_full"

    @property
    def is_hostile(self) -> bool:
        """Garbage or forgery, as opposed to the ordinary churn of a gossip network (late, duplicate)."""
        return self in _HOSTILE


_HOSTILE = {
    RejectReason.OVERSIZE,
    RejectReason.MALFORMED,
    RejectReason.UNSIGNED,
    RejectReason.BAD_SIGNATURE,
    RejectReason.PEER_ID_MISMATCH,
    RejectReason.SENDER_MISMATCH,
}


class RecordError(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def next_seq(previous: int, now_ms: int) -> int:
    """The sequence number of the next publication: it grows, across restarts too (clock based)."""
    return max(previous + 1, now_ms)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def encode_payload(record: CapacityRecord) -> bytes:
    a = record.advert
    leaving = {"leaving": True} if record.leaving else {}  # absent otherwise: older readers see no change
    return canonical_json(
        {
            **leaving,
            "v": RECORD_VERSION,
            "peer_id": record.peer_id,
            "addrs": list(record.addrs),
            "channel": a.channel,
            "cpu_mhz": a.cpu_mhz,
            "cores": a.cores,
            "memory_mb": a.memory_mb,
            "disk_mb": a.disk_mb,
            "gpus": [{"vendor": g.vendor, "model": g.model, "vram_mb": g.vram_mb} for g in a.gpus],
            "ntx_price": str(a.ntx_price),
            "payment_addr": a.payment_addr,
            "executors": list(a.executors),
            "dms_version": record.dms_version,
            "seq": record.seq,
            "timestamp_ms": record.timestamp_ms,
        }
    )


def sign_record(record: CapacityRecord, key: PrivateKey) -> bytes:
    """The record's wire form, signed with `key` (which should be the key of `record.peer_id`)."""
    payload = encode_payload(record)
    envelope = {
        "key": base64.b64encode(key.get_public_key().serialize()).decode(),
        "payload": payload.decode(),
        "sig": base64.b64encode(key.sign(SIGNING_PREFIX + payload)).decode(),
    }
    data = canonical_json(envelope)
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(RejectReason.OVERSIZE, f"record is {len(data)} bytes, over {MAX_RECORD_BYTES}")
    return data


def open_record(data: bytes) -> CapacityRecord:
    """Check a record's size, shape, signature and signer; return it.

    Raises RecordError with the first reason found. Freshness, order and channel are the table's business.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(RejectReason.OVERSIZE, f"{len(data)} bytes, over {MAX_RECORD_BYTES}")
    try:
        envelope = boundedjson.loads(data)
    except boundedjson.JSONRefused as e:
        raise RecordError(RejectReason.MALFORMED, f"not JSON: {e}") from None
    if not isinstance(envelope, dict):
        raise RecordError(RejectReason.MALFORMED, "not a JSON object")
    payload, key_b64, sig_b64 = envelope.get("payload"), envelope.get("key"), envelope.get("sig")
    if not isinstance(payload, str):
        raise RecordError(RejectReason.MALFORMED, "no payload")
    if not key_b64 or not sig_b64:
        raise RecordError(RejectReason.UNSIGNED, "no key or signature")
    if not isinstance(key_b64, str) or not isinstance(sig_b64, str):
        raise RecordError(RejectReason.MALFORMED, "key and sig must be base64 text")
    try:
        key_bytes = base64.b64decode(key_b64, validate=True)
        sig = base64.b64decode(sig_b64, validate=True)
    except binascii.Error:
        raise RecordError(RejectReason.MALFORMED, "key or sig is not base64") from None
    key = _public_key(key_bytes)
    payload_bytes = payload.encode()
    if not _verifies(key, SIGNING_PREFIX + payload_bytes, sig):
        raise RecordError(RejectReason.BAD_SIGNATURE, "signature does not verify")
    try:
        record = _record_from(boundedjson.loads(payload_bytes))
    except (ValueError, TypeError, KeyError) as e:  # JSONRefused is a ValueError
        raise RecordError(RejectReason.MALFORMED, f"bad payload: {e}") from None
    signer = ID.from_pubkey(key).to_base58()
    if signer != record.peer_id:
        raise RecordError(RejectReason.PEER_ID_MISMATCH, f"names {record.peer_id} but is signed by {signer}")
    return record


def _public_key(raw: bytes) -> PublicKey:
    try:
        return deserialize_public_key(raw)
    except Exception as e:  # protobuf DecodeError, unknown key type, bad key bytes: all just "bad key"
        raise RecordError(RejectReason.MALFORMED, f"bad public key: {e}") from None


def _verifies(key: PublicKey, data: bytes, sig: bytes) -> bool:
    try:
        return bool(key.verify(data, sig))
    except Exception:  # nacl raises on a signature of the wrong length instead of answering False
        return False


def _checked_text(value: Any, name: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{name} must be text of at most {limit} characters")
    return value


def _text(obj: dict[str, Any], name: str, *, limit: int = _MAX_TEXT) -> str:
    return _checked_text(obj[name], name, limit)


def _count(obj: dict[str, Any], name: str) -> int:
    value = obj[name]
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0")
    return value


def _texts(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    value = obj[name]
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise ValueError(f"{name} must be a list of at most {_MAX_LIST}")
    return tuple(_checked_text(v, name) for v in value)


def _record_from(obj: Any) -> CapacityRecord:
    if not isinstance(obj, dict):
        raise ValueError("payload is not an object")
    if obj["v"] != RECORD_VERSION:
        raise ValueError(f"unsupported record version {obj['v']!r}")
    cores = obj["cores"]
    if type(cores) not in (int, float) or not 0 <= cores <= 1_000_000:
        raise ValueError("cores must be a number >= 0")
    price = obj["ntx_price"]
    if not isinstance(price, str) or not price.isdigit() or len(price) > 78:
        raise ValueError("ntx_price must be a decimal string of wei")
    leaving = obj.get("leaving", False)
    if type(leaving) is not bool:
        raise ValueError("leaving must be true or false")
    gpus = obj["gpus"]
    if not isinstance(gpus, list) or len(gpus) > _MAX_LIST or not all(isinstance(g, dict) for g in gpus):
        raise ValueError(f"gpus must be a list of at most {_MAX_LIST} objects")
    advert = Advert(
        channel=_text(obj, "channel", limit=64),
        cpu_mhz=_count(obj, "cpu_mhz"),
        cores=float(cores),
        memory_mb=_count(obj, "memory_mb"),
        disk_mb=_count(obj, "disk_mb"),
        ntx_price=int(price),
        payment_addr=_text(obj, "payment_addr"),
        executors=_texts(obj, "executors"),
        gpus=tuple(GpuOffer(_text(g, "vendor"), _text(g, "model"), _count(g, "vram_mb")) for g in gpus),
    )
    return CapacityRecord(
        peer_id=_text(obj, "peer_id", limit=128),
        addrs=_texts(obj, "addrs"),
        advert=advert,
        dms_version=_text(obj, "dms_version", limit=64),
        seq=_count(obj, "seq"),
        timestamp_ms=_count(obj, "timestamp_ms"),
        leaving=leaving,
    )


@dataclass(frozen=True)
class Entry:
    record: CapacityRecord
    received_at: float
    """Our clock (Unix seconds) when the record arrived; the entry expires `ttl_s` later."""
    raw: bytes = b""
    """The record as signed by its peer, to hand on to peers that ask for our table."""


class PeerTable:
    """The latest record of every peer on our channel, each kept `ttl_s` after it arrived.

    Accepts a record only when it is on our channel, fresh (signed within ttl_s, give or take
    CLOCK_SKEW_S) and newer (higher seq) than the one held. A leaving record (the peer's last will)
    removes the peer at once; its seq is remembered until ttl_s passes, so an older record still
    travelling by gossip cannot bring the peer back. Times are passed in: Unix seconds.
    """

    def __init__(self, ttl_s: float, channel: str | None, max_peers: int = MAX_PEERS) -> None:
        self.ttl_s = ttl_s
        self._channel = channel
        self._max_peers = max_peers
        self._entries: dict[str, Entry] = {}
        """Live peers and (`record.leaving`) the tombstones of peers that left."""

    def set_channel(self, channel: str | None) -> list[str]:
        """Switch channel; drop and return the peers whose records are on another one."""
        self._channel = channel
        gone = [pid for pid, e in self._entries.items() if e.record.advert.channel != channel]
        for pid in gone:
            del self._entries[pid]
        return gone

    def offer(self, record: CapacityRecord, now: float, raw: bytes = b"") -> RejectReason | None:
        """Keep `record` if it is acceptable (a leaving one removes its peer); None when taken, else why not."""
        if record.advert.channel != self._channel:
            return RejectReason.WRONG_CHANNEL
        age_s = now - record.timestamp_ms / 1000
        if age_s > self.ttl_s + CLOCK_SKEW_S:
            return RejectReason.STALE
        if age_s < -CLOCK_SKEW_S:
            return RejectReason.FUTURE
        held = self._entries.get(record.peer_id)
        if held is not None and record.seq <= held.record.seq:
            return RejectReason.NOT_NEWER
        if held is None and len(self._entries) >= self._max_peers:
            return RejectReason.TABLE_FULL
        self._entries[record.peer_id] = Entry(record, now, raw)
        return None

    def touch(self, peer_id: str, now: float) -> None:
        """Count a live peer's record as received `now` (a connection that vouched for it has just ended)."""
        entry = self._entries.get(peer_id)
        if entry is not None and not entry.record.leaving:
            self._entries[peer_id] = Entry(entry.record, now, entry.raw)

    def remove(self, peer_id: str) -> bool:
        """Forget a peer (its connection closed, or it stopped answering); True when it was in the table."""
        entry = self._entries.pop(peer_id, None)
        return entry is not None and not entry.record.leaving

    def expire(self, now: float, keep: frozenset[str] = frozenset()) -> list[str]:
        """Drop the peers not heard from for more than ttl_s, except those in `keep` (connected and
        answering: the connection vouches for them); return the live ones dropped."""
        gone = [
            pid
            for pid, e in self._entries.items()
            if now - e.received_at > self.ttl_s and (e.record.leaving or pid not in keep)
        ]
        live = [pid for pid in gone if not self._entries[pid].record.leaving]
        for pid in gone:
            del self._entries[pid]
        return live

    def get(self, peer_id: str) -> Entry | None:
        entry = self._entries.get(peer_id)
        return None if entry is None or entry.record.leaving else entry

    def entries(self) -> list[Entry]:
        return [e for e in self._entries.values() if not e.record.leaving]

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if not e.record.leaving)
