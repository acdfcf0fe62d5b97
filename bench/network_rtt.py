"""Part (b) of bench/network.py: the round trip of one line on a libp2p stream against plain TCP.

A child process (bench/network.py --echo-child) serves `/dms/bench-echo/1.0.0` (a line echo handler registered
with `P2PNode.handle`, the same path as the deployment handler: NetLineStream on both sides, the trio<->asyncio
bridge on both sides) and a plain asyncio TCP line echo on 127.0.0.1; this process opens one stream of each and
times request/response exchanges of one 200-byte line, interleaved in rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import HERE, ROOT, header, load_note, median, p95
from network_clusters import HEARTBEAT_S

from dms.network import NetworkSettings, P2PNode
from dms.network.errors import NetworkError, StreamClosed
from dms.network.streams import NetLineStream

ECHO = "/dms/bench-echo/1.0.0"
SCRIPT = HERE / "network.py"
"""The benchmark's command line; `--echo-child` runs `echo_child`."""


async def echo_child() -> None:
    """The child of the round-trip benchmark: a P2P echo handler and a TCP echo server until stdin closes."""

    async def echo(stream: NetLineStream) -> None:
        with contextlib.suppress(StreamClosed, TimeoutError):
            while True:
                line = await stream.receive(120)
                await stream.send(line + b"\n")

    async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        writer.close()

    with tempfile.TemporaryDirectory(prefix="dms-bench-echo-") as d:
        settings = NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",), heartbeat_s=HEARTBEAT_S)
        node = P2PNode(settings, identity_path=Path(d) / "echo.key", version="bench")
        node.handle(ECHO, echo)
        await node.start()
        server = await asyncio.start_server(tcp_echo, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            print(json.dumps({"p2p": node.addrs[0], "peer_id": node.peer_id, "tcp": port}), flush=True)
            loop = asyncio.get_running_loop()
            stdin = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
            await asyncio.wait_for(stdin.read(), 600)  # end of input (or 10 min) ends the child
        finally:
            server.close()
            await node.stop()


@dataclass
class Rtt:
    p2p: list[float] = field(default_factory=list)
    tcp: list[float] = field(default_factory=list)
    bridge: list[float] = field(default_factory=list)
    trio_side: list[float] = field(default_factory=list)


async def _rtt(exchanges: int, rounds: int) -> Rtt:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--echo-child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert child.stdin is not None and child.stdout is not None
    out = Rtt()
    try:
        hello = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
        with tempfile.TemporaryDirectory(prefix="dms-bench-rtt-") as d:
            settings = NetworkSettings(
                listen_addresses=("/ip4/127.0.0.1/tcp/0",), bootstrap_peers=(hello["p2p"],), heartbeat_s=HEARTBEAT_S
            )
            node = P2PNode(settings, identity_path=Path(d) / "client.key", version="bench")
            await node.start()
            try:
                stream = await _open_when_connected(node, hello["peer_id"])
                reader, writer = await asyncio.open_connection("127.0.0.1", hello["tcp"])
                line = json.dumps({"type": "event", "job_id": "x" * 32, "seq": 1, "kind": "logs", "data": {}})
                msg = (line + " " * (199 - len(line))).encode() + b"\n"  # 200 bytes with the newline

                async def p2p_once() -> float:
                    t = time.perf_counter()
                    await stream.send(msg)
                    got = await stream.receive(10)
                    dt = time.perf_counter() - t
                    assert got + b"\n" == msg
                    return dt

                async def tcp_once() -> float:
                    t = time.perf_counter()
                    writer.write(msg)
                    await writer.drain()
                    got = await asyncio.wait_for(reader.readline(), 10)
                    dt = time.perf_counter() - t
                    assert got == msg
                    return dt

                async def noop() -> None:
                    return None

                thread = node._thread  # the bridge itself: one asyncio -> trio -> asyncio crossing, no I/O
                assert thread is not None

                async def bridge_once() -> float:
                    assert thread is not None
                    t = time.perf_counter()
                    await thread.call(noop)
                    return time.perf_counter() - t

                lines = stream._lines  # the stream's trio side: exchanges without crossing the bridge on our side

                async def trio_loop(k: int) -> list[float]:
                    samples = []
                    for _ in range(k):
                        t = time.perf_counter()
                        await lines.write(msg)
                        got = await lines.read_line(10)
                        samples.append(time.perf_counter() - t)
                        assert got + b"\n" == msg
                    return samples

                for _ in range(50):  # warm-up
                    await p2p_once()
                    await tcp_once()
                    await bridge_once()
                await thread.call(functools.partial(trio_loop, 50))
                per_round = max(1, exchanges // rounds)
                for r in range(rounds):  # interleaved, alternating who goes first
                    order = [(out.p2p, p2p_once), (out.tcp, tcp_once), (out.bridge, bridge_once)]
                    for bucket, once in order if r % 2 == 0 else order[::-1]:
                        for _ in range(per_round):
                            bucket.append(await once())
                    out.trio_side += await thread.call(functools.partial(trio_loop, per_round))
                writer.close()
                await stream.close()
            finally:
                await node.stop()
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 20)
        except TimeoutError:
            child.kill()
            await child.wait()
    return out


async def _open_when_connected(node: P2PNode, peer_id: str) -> NetLineStream:
    deadline = time.monotonic() + 20
    while True:
        try:
            return await node.open_stream(peer_id, ECHO)
        except NetworkError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def rtt_section(exchanges: int) -> str:
    rounds = 10
    note = load_note()
    r = asyncio.run(_rtt(exchanges, rounds))
    ms = 1000.0
    p2p_med, tcp_med = median(r.p2p), median(r.tcp)
    lines = [
        header("Round trip of one line on a libp2p stream"),
        "",
        f"{len(r.p2p)} request/response exchanges of one 200-byte line on one open stream, in {rounds} interleaved",
        "rounds, between this process and a child process on 127.0.0.1. Measured: an echo handler on",
        f"`{ECHO}` registered with P2PNode.handle (not the deployment handler itself, whose protocol has no",
        "request/response loop; it uses the same NetLineStream send/receive, bridge, yamux and noise path).",
        note,
        "",
        "| path | median | p95 | ratio to TCP (median) |",
        "|---|---|---|---|",
        f"| plain TCP, asyncio streams (floor) | {tcp_med * ms:.3f} ms | {p95(r.tcp) * ms:.3f} ms | 1.0x |",
        f"| libp2p stream, NetLineStream.send + receive | {p2p_med * ms:.3f} ms | {p95(r.p2p) * ms:.3f} ms "
        f"| {p2p_med / tcp_med:.1f}x |",
        f"| (the same, this side driven from inside the trio thread) | {median(r.trio_side) * ms:.3f} ms "
        f"| {p95(r.trio_side) * ms:.3f} ms | {median(r.trio_side) / tcp_med:.1f}x |",
        f"| (one bridge crossing asyncio -> trio -> asyncio, no I/O) | {median(r.bridge) * ms:.3f} ms "
        f"| {p95(r.bridge) * ms:.3f} ms | {median(r.bridge) / tcp_med:.1f}x |",
        "",
        "One libp2p exchange crosses the bridge twice on each side (send, receive) and goes through noise and",
        "yamux twice; the rows in parentheses split that up.",
        "",
    ]
    return "\n".join(lines)
