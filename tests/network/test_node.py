"""P2PNode in this process: start-up refusals, the identity file, errors before start and after stop."""

from __future__ import annotations

import asyncio
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from dms.errors import InvalidInput
from dms.network import Advert, NetworkError, NetworkSettings, P2PNode
from dms.network.streams import NetLineStream
from tests.procs import free_port

ADVERT = Advert("nunet-test", cpu_mhz=1000, cores=1, memory_mb=512, disk_mb=1000, ntx_price=1, payment_addr="0x0")


def make_node(tmp_path: Path, port: int = 0, name: str = "node") -> P2PNode:
    settings = NetworkSettings(listen_addresses=(f"/ip4/127.0.0.1/tcp/{port}",), channel="nunet-test", heartbeat_s=1)
    return P2PNode(settings, identity_path=tmp_path / f"{name}.key", version="test")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[P2PNode]:
    n = make_node(tmp_path)
    await n.start()
    yield n
    await n.stop()


async def test_refuses_a_port_another_node_listens_on(tmp_path: Path) -> None:
    port = free_port()
    first = make_node(tmp_path, port, "first")
    await first.start()
    try:
        with pytest.raises(NetworkError, match=rf"^listen address /ip4/127.0.0.1/tcp/{port} is already in use$"):
            await make_node(tmp_path, port, "second").start()
    finally:
        await first.stop()


async def test_refuses_a_port_held_with_so_reuseport(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # what py-libp2p itself does
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(NetworkError, match="is already in use"):
            await make_node(tmp_path, port).start()


async def test_identity_is_created_private_and_kept(tmp_path: Path) -> None:
    n = make_node(tmp_path)
    await n.start()
    first_id = n.peer_id
    await n.stop()
    key = tmp_path / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    key.chmod(0o644)
    again = make_node(tmp_path)
    await again.start()
    await again.stop()
    assert again.peer_id == first_id
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


async def test_corrupt_identity_is_refused_and_kept(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    key.write_bytes(b"not a key")
    with pytest.raises(NetworkError, match="cannot read the p2p identity"):
        await make_node(tmp_path).start()
    assert key.read_bytes() == b"not a key"


async def test_before_start_and_after_stop(tmp_path: Path) -> None:
    n = make_node(tmp_path)
    with pytest.raises(NetworkError, match="has not started"):
        _ = n.peer_id
    assert n.peers() == [] and n.addrs == [] and n.metrics.records_accepted == 0
    with pytest.raises(NetworkError, match="not running"):
        await n.ping("12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4")
    await n.start()
    await n.stop()
    await n.stop()
    with pytest.raises(NetworkError, match="not running"):
        await n.advertise(ADVERT)


async def test_addrs_carry_the_peer_id(node: P2PNode) -> None:
    assert len(node.addrs) == 1
    assert node.addrs[0].startswith("/ip4/127.0.0.1/tcp/") and node.addrs[0].endswith(f"/p2p/{node.peer_id}")


async def test_bad_requests(node: P2PNode) -> None:
    with pytest.raises(InvalidInput, match="channel"):
        await node.advertise(Advert("nunet-elsewhere", 1, 1, 1, 1, 1, "0x0"))
    with pytest.raises(InvalidInput, match="not a peer id"):
        await node.ping("garbage")
    with pytest.raises(InvalidInput, match="own peer id"):
        await node.ping(node.peer_id)
    with pytest.raises(NetworkError, match="no address known"):
        await node.ping("12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4")
    with pytest.raises(InvalidInput, match="cpu_mhz"):  # peers would refuse it: so do we
        await node.advertise(replace(ADVERT, cpu_mhz=-1))
    with pytest.raises(InvalidInput, match="executors"):
        await node.advertise(replace(ADVERT, executors=tuple(f"e{i}" for i in range(100))))
    await node.advertise(ADVERT)
    await node.set_channel("nunet-team")  # an advert on another channel is withdrawn
    await node.advertise(None)


async def test_psk_admits_only_nodes_with_the_same_key(tmp_path: Path) -> None:
    def with_psk(name: str, psk: str, bootstrap: tuple[str, ...] = ()) -> P2PNode:
        settings = NetworkSettings(
            listen_addresses=("/ip4/127.0.0.1/tcp/0",), bootstrap_peers=bootstrap, channel="nunet-test", psk=psk
        )
        return P2PNode(settings, identity_path=tmp_path / f"{name}.key", version="test")

    a = with_psk("a", "ab" * 32)
    await a.start()
    b, c = with_psk("b", "ab" * 32, (a.addrs[0],)), with_psk("c", "cd" * 32, (a.addrs[0],))
    try:
        for n in (b, c):
            await n.start()
            await n.advertise(ADVERT)
        for _ in range(100):
            if [p.peer_id for p in a.peers()] == [b.peer_id] and a.metrics.bad_handshakes >= 1:
                break
            await asyncio.sleep(0.1)
        assert [p.peer_id for p in a.peers()] == [b.peer_id]
        assert a.metrics.bad_handshakes >= 1  # c's connections, under another key, never got to Noise
        assert c.peers() == [] and await c.connected() == []
    finally:
        for n in (a, b, c):
            await n.stop()


def test_mdns_stays_off_unless_enabled() -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair

    from dms.network.host import build_host

    host = build_host(NetworkSettings(), create_new_key_pair(), print, print)
    assert getattr(host, "mDNS", "missing") is None


def test_importing_the_package_loads_neither_libp2p_nor_trio() -> None:
    code = "import sys, dms.network; print(any(m.split('.')[0] in ('libp2p', 'trio') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


async def test_lines_sent_in_one_write_then_raw_bytes_arrive_whole_and_in_order(tmp_path: Path) -> None:
    """A read takes the lines behind it ahead (one crossing for a batch); raw bytes after them stay exact."""
    raw = bytes(range(256)) * 300  # newlines (byte 10) every 256 bytes, past the read-ahead's 64 KiB
    got: asyncio.Future[tuple[list[bytes], bytes]] = asyncio.get_running_loop().create_future()

    async def serve(stream: NetLineStream) -> None:
        lines = [await stream.receive(5) for _ in range(3)]
        data = b""
        while len(data) < len(raw):
            data += await stream.receive_bytes(len(raw) - len(data), 5)
        got.set_result((lines, data))

    a = make_node(tmp_path, name="a")
    a.handle("/dms/test-lines/1.0.0", serve)
    await a.start()
    settings = NetworkSettings(
        listen_addresses=("/ip4/127.0.0.1/tcp/0",), bootstrap_peers=(a.addrs[0],), channel="nunet-test"
    )
    b = P2PNode(settings, identity_path=tmp_path / "b.key", version="test")
    await b.start()
    try:
        stream = await b.open_stream(a.peer_id, "/dms/test-lines/1.0.0")
        await stream.send(b"one\n\ntwo\n" + raw)  # an empty line among them
        assert await asyncio.wait_for(got, 10) == ([b"one", b"", b"two"], raw)
        await stream.close()
    finally:
        await b.stop()
        await a.stop()
