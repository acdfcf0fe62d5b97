"""Artifacts between real daemons: upload, ranged download, libp2p transfer, resume, hostile bytes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dms.app import Daemon, network_settings
from dms.artifacts import PROTOCOL
from dms.artifacts.direct import Offer
from dms.network import P2PNode
from dms.network.streams import NetLineStream
from tests.conftest import make_settings
from tests.procs import eventually, run_cli

Handler = Callable[[NetLineStream], Awaitable[None]]


async def connected(a: P2PNode, b: P2PNode) -> None:
    async def check() -> bool:
        return b.peer_id in {p.peer_id for p in await a.connected()}

    await eventually(check, 15, "the nodes are connected")


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Daemon]]:
    a = Daemon(make_settings(tmp_path / "a", artifacts={"max_upload_mb": 8}), "test")
    await a.start()
    assert a.node is not None
    b = Daemon(make_settings(tmp_path / "b", p2p={"bootstrap_peers": [a.node.addrs[0]]}), "test")
    try:
        await b.start()
        assert b.node is not None
        await connected(b.node, a.node)
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def upload(url: str, data: bytes) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(url + "/api/v1/artifacts", data=data) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def fetch(d: Daemon, sha: str, peer_id: str) -> tuple[int, dict[str, Any]]:
    url = f"{d.url}/api/v1/artifacts/{sha}/fetch"
    async with aiohttp.ClientSession() as s, s.post(url, json={"peer_id": peer_id}) as r:
        return r.status, dict(await r.json())


async def metric(d: Daemon, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(d.url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_upload_ranged_download_and_transfer_between_daemons(two: tuple[Daemon, Daemon]) -> None:
    a, b = two
    assert a.node is not None
    data = os.urandom(3 * 1024 * 1024 + 17)
    sha = hashlib.sha256(data).hexdigest()
    assert await upload(a.url, data) == {"sha256": sha, "size": len(data)}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{a.url}/api/v1/artifacts/{sha}", headers={"Range": "bytes=100-199"}) as r:
            assert r.status == 206 and await r.read() == data[100:200]
        async with s.get(f"{b.url}/api/v1/artifacts/{sha}") as r:
            assert r.status == 404 and (await r.json())["code"] == "artifact_not_found"
        async with s.get(f"{b.url}/api/v1/artifacts/not-a-hash") as r:
            assert r.status == 400
        # over max_upload_mb (8 MiB): refused, nothing kept
        async with s.post(a.url + "/api/v1/artifacts", data=b"\0" * (8 * 1024 * 1024 + 1)) as r:
            assert r.status == 413 and (await r.json())["code"] == "artifact_too_large"
        async with s.get(a.url + "/api/v1/artifacts") as r:
            assert [x["sha256"] for x in (await r.json())["artifacts"]] == [sha]
    assert await fetch(b, sha, a.node.peer_id) == (200, {"sha256": sha, "size": len(data)})
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/api/v1/artifacts/{sha}") as r:
        assert r.status == 200 and await r.read() == data
    assert await metric(b, "dms_artifact_transfers_fetched_total") == 1
    # the bytes took the direct path (docs/artifacts.md): both ends count it
    assert await metric(b, "dms_artifact_transfers_direct_total") == 1
    assert await metric(a, "dms_artifact_transfers_direct_total") == 1
    # under 1 MiB the bytes stay on the libp2p stream (a direct connection would cost more than it saves)
    small = os.urandom(100_000)
    small_sha = (await upload(a.url, small))["sha256"]
    assert await fetch(b, small_sha, a.node.peer_id) == (200, {"sha256": small_sha, "size": len(small)})
    assert await metric(b, "dms_artifact_transfers_direct_total") == 1
    assert await metric(b, "dms_artifact_transfers_fetched_total") == 2
    # a hash nobody has: the peer says so, and the answer names it
    status, body = await fetch(b, "0" * 64, a.node.peer_id)
    assert status == 502 and "no artifact" in body["error"]


@pytest.fixture
async def rogue(tmp_path: Path, two: tuple[Daemon, Daemon]) -> AsyncIterator[tuple[Daemon, P2PNode, list[Handler]]]:
    """A peer of daemon b that serves /dms/artifacts/1.0.0 with whatever the test puts in `behaviour`."""
    _, b = two
    assert b.node is not None
    behaviour: list[Handler] = []

    async def serve(stream: NetLineStream) -> None:
        await behaviour.pop(0)(stream)

    settings = make_settings(tmp_path / "rogue", p2p={"bootstrap_peers": [b.node.addrs[0]]})
    node = P2PNode(network_settings(settings, None), identity_path=tmp_path / "rogue.key", version="test")
    node.handle(PROTOCOL, serve)
    await node.start()
    try:
        await connected(b.node, node)
        yield b, node, behaviour
    finally:
        await node.stop()


def sender(body: bytes, size: int, offsets: list[int]) -> Handler:
    async def send(stream: NetLineStream) -> None:
        offsets.append(json.loads(await stream.receive(5))["offset"])
        await stream.send(json.dumps({"size": size}).encode() + b"\n")
        await stream.send(body)

    return send


async def test_wrong_bytes_are_refused_and_counted(rogue: tuple[Daemon, P2PNode, list[Handler]]) -> None:
    b, node, behaviour = rogue
    data = os.urandom(700_000)
    sha = hashlib.sha256(data).hexdigest()
    wrong = bytearray(data)
    wrong[500_000] ^= 1
    offsets: list[int] = []
    behaviour.append(sender(bytes(wrong), len(data), offsets))
    status, body = await fetch(b, sha, node.peer_id)
    assert status == 502 and body["code"] == "artifact_corrupt"
    assert await metric(b, "dms_artifact_transfers_refused_total") == 1
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/api/v1/artifacts/{sha}") as r:
        assert r.status == 404  # nothing unverified is kept
    # a fair second try starts again from 0 (the bad bytes were thrown away) and succeeds
    behaviour.append(sender(data, len(data), offsets))
    assert await fetch(b, sha, node.peer_id) == (200, {"sha256": sha, "size": len(data)})
    assert offsets == [0, 0]


async def test_dropped_transfer_resumes_at_its_offset(rogue: tuple[Daemon, P2PNode, list[Handler]]) -> None:
    b, node, behaviour = rogue
    data = os.urandom(1_500_000)
    sha = hashlib.sha256(data).hexdigest()
    offsets: list[int] = []
    half = 600_000
    behaviour.append(sender(data[:half], len(data), offsets))  # then the stream ends

    async def resume(stream: NetLineStream) -> None:
        offset = json.loads(await stream.receive(5))["offset"]
        offsets.append(offset)
        await stream.send(json.dumps({"size": len(data)}).encode() + b"\n")
        await stream.send(data[offset:])

    behaviour.append(resume)
    assert await fetch(b, sha, node.peer_id) == (200, {"sha256": sha, "size": len(data)})
    assert offsets == [0, half]
    assert await metric(b, "dms_artifact_transfers_resumed_total") == 1
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/api/v1/artifacts/{sha}") as r:
        assert await r.read() == data


async def test_cli_puts_gets_and_lists(daemon: Daemon, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(300_000))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    put = await asyncio.to_thread(run_cli, "artifact", "put", str(src), dms=daemon.url)  # the daemon is on this loop
    assert put.returncode == 0 and put.stdout.split()[:2] == [sha, "300000"], put.stdout + put.stderr
    got = await asyncio.to_thread(run_cli, "artifact", "get", sha, "-o", str(tmp_path / "out.bin"), dms=daemon.url)
    assert got.returncode == 0 and (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    listed = await asyncio.to_thread(run_cli, "artifact", "list", dms=daemon.url)
    assert sha in listed.stdout
    missing = await asyncio.to_thread(run_cli, "artifact", "get", "0" * 64, dms=daemon.url)
    assert missing.returncode == 1 and "no artifact" in missing.stderr


async def test_a_direct_path_that_cannot_be_reached_falls_back_to_libp2p(
    rogue: tuple[Daemon, P2PNode, list[Handler]],
) -> None:
    """As behind a firewall that lets only the libp2p port through: the offered port refuses, the asker
    asks again without the direct path and gets the bytes over the libp2p stream."""
    b, node, behaviour = rogue
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    offer = Offer(port, os.urandom(32), os.urandom(16)).to_json()
    requests: list[dict[str, Any]] = []

    async def offer_a_dead_port(stream: NetLineStream) -> None:
        requests.append(json.loads(await stream.receive(5)))
        await stream.send(json.dumps({"size": len(data), "direct": offer}).encode() + b"\n")
        await stream.receive(5)  # until the asker gives up on this stream

    async def over_libp2p(stream: NetLineStream) -> None:
        requests.append(json.loads(await stream.receive(5)))
        await stream.send(json.dumps({"size": len(data)}).encode() + b"\n")
        await stream.send(data)

    behaviour.extend([offer_a_dead_port, over_libp2p])
    assert await fetch(b, sha, node.peer_id) == (200, {"sha256": sha, "size": len(data)})
    assert [r.get("direct") for r in requests] == [True, None]
    assert await metric(b, "dms_artifact_transfers_direct_total") == 0


async def test_a_garbage_direct_offer_is_refused_with_its_reason(rogue: tuple[Daemon, P2PNode, list[Handler]]) -> None:
    b, node, behaviour = rogue
    offer = Offer(9, os.urandom(32), os.urandom(16)).to_json()

    async def garbage(stream: NetLineStream) -> None:
        await stream.receive(5)
        await stream.send(json.dumps({"size": 10, "direct": {**offer, "port": "nine"}}).encode() + b"\n")

    behaviour.append(garbage)
    status, body = await fetch(b, "1" * 64, node.peer_id)
    assert status == 502 and "bad port" in body["error"]
