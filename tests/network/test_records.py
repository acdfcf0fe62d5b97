"""Capacity records and the peer table, with no network: signing, forgery, bad input, ordering, expiry."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from dms.network.model import Advert, CapacityRecord, GpuOffer
from dms.network.records import (
    CLOCK_SKEW_S,
    MAX_RECORD_BYTES,
    SIGNING_PREFIX,
    PeerTable,
    RecordError,
    RejectReason,
    canonical_json,
    encode_payload,
    next_seq,
    open_record,
    sign_record,
)

NOW = 1_800_000_000.0
ADVERT = Advert(
    channel="nunet-test",
    cpu_mhz=4000,
    cores=1.5,
    memory_mb=2048,
    disk_mb=10_000,
    ntx_price=12_345_678_901_234_567_890_123,  # more than a double holds exactly
    payment_addr="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    executors=("docker",),
    gpus=(GpuOffer("nvidia", "A100", 40_960),),
)


def make_record(pair: KeyPair, *, seq: int = 1, at: float = NOW, channel: str = "nunet-test") -> CapacityRecord:
    return CapacityRecord(
        peer_id=ID.from_pubkey(pair.public_key).to_base58(),
        addrs=("/ip4/127.0.0.1/tcp/9000",),
        advert=replace(ADVERT, channel=channel),
        dms_version="0.1.0",
        seq=seq,
        timestamp_ms=int(at * 1000),
    )


def envelope(data: bytes) -> dict[str, str]:
    return json.loads(data)  # type: ignore[no-any-return]


def reason_of(data: bytes) -> RejectReason:
    with pytest.raises(RecordError) as err:
        open_record(data)
    return err.value.reason


@pytest.fixture(scope="module")
def pair() -> KeyPair:
    return create_new_key_pair()


@pytest.fixture(scope="module")
def other() -> KeyPair:
    return create_new_key_pair()


def test_sign_and_open_round_trip(pair: KeyPair) -> None:
    record = make_record(pair)
    assert open_record(sign_record(record, pair.private_key)) == record


def test_payload_is_canonical_and_price_exact(pair: KeyPair) -> None:
    payload = encode_payload(make_record(pair))
    assert payload == canonical_json(json.loads(payload))
    assert json.loads(payload)["ntx_price"] == "12345678901234567890123"


def test_tampered_payload_has_bad_signature(pair: KeyPair) -> None:
    env = envelope(sign_record(make_record(pair), pair.private_key))
    env["payload"] = env["payload"].replace('"cpu_mhz":4000', '"cpu_mhz":9999')
    assert reason_of(canonical_json(env)) is RejectReason.BAD_SIGNATURE


def test_signature_by_another_key_than_the_one_given_is_bad(pair: KeyPair, other: KeyPair) -> None:
    env = envelope(sign_record(make_record(pair), pair.private_key))
    env["sig"] = base64.b64encode(other.private_key.sign(SIGNING_PREFIX + env["payload"].encode())).decode()
    assert reason_of(canonical_json(env)) is RejectReason.BAD_SIGNATURE


def test_record_of_one_peer_signed_by_another_is_a_peer_id_mismatch(pair: KeyPair, other: KeyPair) -> None:
    forged = sign_record(make_record(pair), other.private_key)  # names `pair`, signed (validly) by `other`
    assert reason_of(forged) is RejectReason.PEER_ID_MISMATCH


def test_garbage_signature_bytes_are_a_bad_signature(pair: KeyPair) -> None:
    env = envelope(sign_record(make_record(pair), pair.private_key))
    env["sig"] = base64.b64encode(b"short").decode()
    assert reason_of(canonical_json(env)) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize("drop", ["sig", "key"])
def test_unsigned_record(pair: KeyPair, drop: str) -> None:
    env = envelope(sign_record(make_record(pair), pair.private_key))
    del env[drop]
    assert reason_of(canonical_json(env)) is RejectReason.UNSIGNED


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'{"payload": 5, "key": "a", "sig": "b"}',
        b'{"payload": "{}", "key": "!!", "sig": "b"}',
        b'{"payload": "{}", "key": "AAAA", "sig": "AAAA"}',  # base64, but not a public key
        b"[" * 8000,  # deeper than the JSON parser recurses
    ],
)
def test_malformed(data: bytes) -> None:
    assert reason_of(data) is RejectReason.MALFORMED


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpu_mhz", -1), ("cpu_mhz", True), ("cores", "2"), ("ntx_price", 5), ("ntx_price", "1e9"), ("v", 2)],
)
def test_signed_but_invalid_payload_is_malformed(pair: KeyPair, field: str, value: object) -> None:
    payload = json.loads(encode_payload(make_record(pair)))
    payload[field] = value
    text = canonical_json(payload)
    env = {
        "key": base64.b64encode(pair.public_key.serialize()).decode(),
        "payload": text.decode(),
        "sig": base64.b64encode(pair.private_key.sign(SIGNING_PREFIX + text)).decode(),
    }
    assert reason_of(canonical_json(env)) is RejectReason.MALFORMED


def test_oversize_is_refused_before_parsing() -> None:
    assert reason_of(b"x" * (MAX_RECORD_BYTES + 1)) is RejectReason.OVERSIZE


def test_signing_an_oversize_record_fails(pair: KeyPair) -> None:
    huge = replace(make_record(pair), addrs=tuple("/ip4/127.0.0.1/tcp/1" + "0" * 250 for _ in range(32)))
    with pytest.raises(RecordError) as err:
        sign_record(huge, pair.private_key)
    assert err.value.reason is RejectReason.OVERSIZE


def test_hostile_reasons() -> None:
    assert RejectReason.BAD_SIGNATURE.is_hostile and RejectReason.MALFORMED.is_hostile
    assert not RejectReason.NOT_NEWER.is_hostile and not RejectReason.STALE.is_hostile


def test_seq_grows_across_restarts() -> None:
    assert next_seq(0, 1000) == 1000
    assert next_seq(1000, 1000) == 1001  # two publications in one millisecond
    assert next_seq(5000, 1000) == 5001  # clock stepped back


class TestPeerTable:
    def test_newer_seq_replaces(self, pair: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        assert table.offer(make_record(pair, seq=1), NOW) is None
        assert table.offer(make_record(pair, seq=2), NOW + 1) is None
        entry = table.get(make_record(pair).peer_id)
        assert entry is not None and entry.record.seq == 2 and entry.received_at == NOW + 1

    @pytest.mark.parametrize("seq", [1, 2])
    def test_older_or_equal_seq_is_dropped(self, pair: KeyPair, seq: int) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        table.offer(make_record(pair, seq=2), NOW)
        assert table.offer(make_record(pair, seq=seq), NOW) is RejectReason.NOT_NEWER
        entry = table.get(make_record(pair).peer_id)
        assert entry is not None and entry.record.seq == 2

    def test_stale_is_dropped(self, pair: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        signed_at = NOW - 5 - CLOCK_SKEW_S - 1
        assert table.offer(make_record(pair, at=signed_at), NOW) is RejectReason.STALE
        assert len(table) == 0

    def test_far_future_is_dropped(self, pair: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        assert table.offer(make_record(pair, at=NOW + CLOCK_SKEW_S + 1), NOW) is RejectReason.FUTURE

    def test_other_channel_is_dropped(self, pair: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        assert table.offer(make_record(pair, channel="nunet-team"), NOW) is RejectReason.WRONG_CHANNEL
        assert PeerTable(ttl_s=5, channel=None).offer(make_record(pair), NOW) is RejectReason.WRONG_CHANNEL

    def test_expiry_after_ttl(self, pair: KeyPair, other: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        table.offer(make_record(pair), NOW)
        table.offer(make_record(other, at=NOW + 3), NOW + 3)
        assert table.expire(NOW + 5) == []
        assert table.expire(NOW + 5.1) == [make_record(pair).peer_id]
        assert [e.record.peer_id for e in table.entries()] == [make_record(other).peer_id]

    def test_channel_switch_drops_the_old_channel(self, pair: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        table.offer(make_record(pair), NOW)
        assert table.set_channel("nunet-team") == [make_record(pair).peer_id]
        assert len(table) == 0

    def test_full_table_refuses_new_peers_but_updates_known_ones(self, pair: KeyPair, other: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test", max_peers=1)
        table.offer(make_record(pair, seq=1), NOW)
        assert table.offer(make_record(other), NOW) is RejectReason.TABLE_FULL
        assert table.offer(make_record(pair, seq=2), NOW) is None

    def test_a_leaving_record_removes_the_peer_at_once_and_older_ones_cannot_return(
        self, pair: KeyPair, other: KeyPair
    ) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        table.offer(make_record(pair, seq=1), NOW)
        table.offer(make_record(other, seq=1), NOW)
        leaving = replace(make_record(pair, seq=2), leaving=True)
        assert open_record(sign_record(leaving, pair.private_key)).leaving  # survives the wire
        assert table.offer(leaving, NOW + 1) is None
        assert table.get(leaving.peer_id) is None and len(table) == 1
        assert [e.record.peer_id for e in table.entries()] == [make_record(other).peer_id]
        assert table.offer(make_record(pair, seq=1), NOW + 1) is RejectReason.NOT_NEWER  # late gossip
        assert table.expire(NOW + 7) == [make_record(other).peer_id]  # the tombstone goes silently
        assert table.offer(make_record(pair, seq=3, at=NOW + 7), NOW + 7) is None  # it came back

    def test_connected_peers_do_not_expire(self, pair: KeyPair, other: KeyPair) -> None:
        table = PeerTable(ttl_s=5, channel="nunet-test")
        table.offer(make_record(pair), NOW)
        table.offer(make_record(other), NOW)
        assert table.expire(NOW + 60, keep=frozenset({make_record(pair).peer_id})) == [make_record(other).peer_id]
        assert [e.record.peer_id for e in table.entries()] == [make_record(pair).peer_id]
        assert table.remove(make_record(pair).peer_id) and len(table) == 0


def test_a_record_without_the_leaving_key_is_not_leaving(pair: KeyPair) -> None:
    data = sign_record(make_record(pair), pair.private_key)
    assert b"leaving" not in data and not open_record(data).leaving
