"""Refused and hostile peers: the allow-list, raw TCP garbage, and a libp2p peer sending bad records.

Each time the node must count what it dropped and keep serving its other peers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.identity_utils import load_identity
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from dms.network.capacity import topic_for
from dms.network.host import build_host
from dms.network.model import CapacityRecord
from dms.network.protocols import CAPACITY_PROTOCOL
from dms.network.records import MAX_RECORD_BYTES, sign_record
from dms.network.service import build_gossipsub
from dms.network.settings import NetworkSettings
from tests.network.node_proc import DEFAULT_ADVERT, NodeProc, advert_from, wait_for

Spawn = Callable[..., NodeProc]


def test_peer_not_in_allowed_peers_is_refused(spawn: Spawn) -> None:
    b = spawn("b")
    a = spawn("a", allow=(b.peer_id,), bootstrap=(b.addr,))
    c = spawn("c", bootstrap=(a.addr,))
    wait_for("a and b see each other", lambda: b.peer_id in a.peers() and a.peer_id in b.peers(), 10)
    wait_for("a refuses c", lambda: a.metrics()["peers_refused"] >= 1, 10)
    wait_for("c fails to dial a", lambda: c.metrics()["dial_failures"] >= 1, 10)

    assert c.peer_id not in a.peers() and c.peer_id not in a.request("connected")["connected"]
    assert a.peer_id not in c.peers() and c.request("connected")["connected"] == []
    assert a.ping(c.peer_id)["error"]["type"] in ("UnknownPeer", "PeerUnreachable")


def _send_garbage(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        with contextlib.suppress(OSError):  # the node may have hung up already (ENOTCONN)
            s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # it hung up on unread garbage
            while s.recv(4096):  # until the node hangs up
                pass


def test_raw_tcp_garbage_is_counted_and_the_node_keeps_serving(spawn: Spawn) -> None:
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("a sees b", lambda: b.peer_id in a.peers(), 10)

    _send_garbage(a.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
    _send_garbage(a.port, b"\x13/multistream/1.0.0\n\x11/plaintext/2.0.0\n")  # plaintext: we only speak Noise
    wait_for("a counts two bad handshakes", lambda: a.metrics()["bad_handshakes"] >= 2, 10)

    b.set_advert({**DEFAULT_ADVERT, "cpu_mhz": 4242})
    wait_for("a still follows b", lambda: a.peers()[b.peer_id]["cpu_mhz"] == 4242, 5)
    assert a.ping(b.peer_id)["rtt_s"] > 0
    assert spawn("c", bootstrap=(a.addr,)) and wait_for("a accepts a new peer", lambda: len(a.peers()) == 2, 10)


def _record_of(pair: KeyPair, cpu_mhz: int) -> CapacityRecord:
    now_ms = int(time.time() * 1000)
    return CapacityRecord(
        peer_id=ID.from_pubkey(pair.public_key).to_base58(),
        addrs=("/ip4/127.0.0.1/tcp/1",),
        advert=replace(advert_from(DEFAULT_ADVERT), cpu_mhz=cpu_mhz),
        dms_version="rogue",
        seq=now_ms,
        timestamp_ms=now_ms,
    )


async def _rogue(target_addr: str, victim: KeyPair) -> None:
    """A libp2p peer that sends the target bad records straight and by gossip, then leaves."""
    rogue = create_new_key_pair()
    host = build_host(NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",)), rogue, print, print)
    gossipsub = build_gossipsub()
    pubsub = Pubsub(host, gossipsub)
    target = info_from_p2p_addr(multiaddr.Multiaddr(target_addr))
    forged = sign_record(_record_of(victim, 1), rogue.private_key)  # names the victim, signed by the rogue
    stolen = sign_record(_record_of(victim, 1), victim.private_key)  # valid, but not the sender's own
    unsigned = json.dumps({"payload": json.loads(forged)["payload"]}).encode()
    bad_key = json.dumps({**json.loads(forged), "key": base64.b64encode(b"nonsense").decode()}).encode()
    lines = [b"{not json", b"x" * (MAX_RECORD_BYTES + 100), forged, stolen, unsigned, bad_key]
    async with (
        host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        await pubsub.subscribe(topic_for("nunet-test"))
        with trio.fail_after(10):
            await host.connect(target)
            for line in lines:
                stream = await host.new_stream(target.peer_id, [CAPACITY_PROTOCOL])
                await stream.write(line + b"\n")
                await stream.close()
            await pubsub.wait_for_subscription(target.peer_id, topic_for("nunet-test"))
            await pubsub.publish(topic_for("nunet-test"), forged)
            await trio.sleep(0.5)
        await host.close()


def test_bad_records_from_a_libp2p_peer_are_counted_and_dropped(spawn: Spawn, tmp_path: Path) -> None:
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("a sees b", lambda: b.peer_id in a.peers(), 10)

    trio.run(_rogue, a.addr, load_identity(tmp_path / "b.key"))

    def counted() -> bool:
        m = a.metrics()
        r = m["records_rejected"]
        return bool(
            m["bad_streams"] >= 6
            and r.get("malformed", 0) >= 2
            and r.get("oversize", 0) >= 1
            and r.get("peer_id_mismatch", 0) >= 2  # straight and by gossip
            and r.get("sender_mismatch", 0) >= 1
            and r.get("unsigned", 0) >= 1
        )

    wait_for("a counts every bad record", counted, 10)
    assert a.peers()[b.peer_id]["cpu_mhz"] == DEFAULT_ADVERT["cpu_mhz"]  # the forgeries changed nothing
    b.set_advert({**DEFAULT_ADVERT, "cpu_mhz": 4343})
    wait_for("a still follows b", lambda: a.peers()[b.peer_id]["cpu_mhz"] == 4343, 5)
    assert a.ping(b.peer_id)["rtt_s"] > 0
