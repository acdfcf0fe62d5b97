"""Network figures: discovery time of N nodes around one bootstrap hub, and a deployment-stream round trip.

(a) Discovery. N nodes on loopback (real `nunet-dms` daemons, or bare P2PNode processes with `--kind nodes`),
p2p.heartbeat_s 2 (the default), all onboarded (each with its own advertised CPU, so a stale record is told
apart). The data dirs are prepared once (start, onboard, stop), then each measured run is a cold start: the hub
first (it is up before anyone needs it, as in a real network), then the N-1 others at once. Reported: the time
from their spawn to the last one's REST port answering (READY), and, counted from that moment, the time until
every node lists every other node's capacity in /api/v1/peers/dht. The floor is the bare-node run
(`--kind nodes`), where no daemon sits on top of the P2P node.

(b) Stream round trip. A child process serves `/dms/bench-echo/1.0.0` (a line echo handler registered with
`P2PNode.handle`, the same path as the deployment handler: NetLineStream on both sides, the trio<->asyncio bridge
on both sides) and a plain asyncio TCP line echo on 127.0.0.1. This process opens one stream of each and times
request/response exchanges of one 200-byte line, interleaved in rounds.

Usage: .venv/bin/python bench/network.py [--part discovery|rtt|all] [--kind daemons|nodes|both]
       [--sizes 5,10,20] [--runs N] [--exchanges N] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import ROOT, append_results, header, load_note, median, p95

from dms.network import NetworkSettings, P2PNode
from dms.network.errors import NetworkError, StreamClosed
from dms.network.streams import NetLineStream
from tests.network.node_proc import DEFAULT_ADVERT, NodeProc
from tests.procs import DmsProcess

HEARTBEAT_S = 2.0
REFRESH_S = 120.0
"""p2p.record_refresh_s, the daemon's default (node_proc's own default, 60 s, is for tests)."""
READY_TIMEOUT_S = 180.0
DISCOVERY_TIMEOUT_S = 60.0
POLL_S = 0.5
ECHO = "/dms/bench-echo/1.0.0"
PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SELF = Path(__file__).resolve()
GOAL = "every node sees every other within 5 s of the last READY at N = 20 (10 s at 40); idle node under 1 % of a core"
IDLE_SETTLE_S = 5.0
"""Default; `--settle` sets it: seconds after discovery before looking for the connections to settle."""
SETTLED_QUIET_S = 15.0
"""The connections count as settled once no node's set of connections (nor its trim and sync counters) has
changed for this long: three rounds of the AutoConnector (every 5 s), almost four of the trimmer (every 4 s)."""
SETTLE_MAX_S = 120.0
"""After this long past `--settle` the idle window starts anyway, and the row says the network had not settled."""


def settle_s() -> float:
    return float(os.environ.get("DMS_BENCH_SETTLE_S", IDLE_SETTLE_S))


IDLE_WINDOW_S = 20.0

# ----- (a) discovery -----


@dataclass
class DiscoveryRun:
    hub_ready_s: float
    last_ready_s: float
    """From the spawn of the N-1 others to the last one answering."""
    visible_s: float | None
    """From the last READY to every node seeing every other; None when not within the timeout."""
    seen_pairs: int
    pairs: int
    still_visible: bool = True
    settled_s: float | None = None
    """From the last READY until the connections stopped changing (None: not within SETTLE_MAX_S)."""
    cpu_s: float = 0.0
    """CPU seconds all N processes spent in the idle window after discovery, per second of it."""
    node_cpu: list[float] = field(default_factory=list)
    """Per node: cores used in the idle window."""
    node_msgs: list[float] = field(default_factory=list)
    """Per node: p2p messages a second (pings answered + records received + records published + table syncs)."""
    node_bytes: list[float] = field(default_factory=list)
    """Per node: TCP bytes sent a second (the kernel's per-socket counts, `ss -ti`)."""


@dataclass
class Cluster:
    """N nodes of one kind, prepared once, started cold for each run."""

    kind: str
    n: int
    root: Path
    expected: dict[str, int] = field(default_factory=dict)
    """peer id -> advertised cpu_mhz."""

    def run(self) -> DiscoveryRun:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _answers(d: DmsProcess) -> bool:
    try:
        _get(d.url + "/api/v1/onboarding/status", timeout=2)
        return True
    except (OSError, ValueError):
        return False


def _wait_all_ready(procs: list[DmsProcess], t0: float) -> list[float]:
    """Seconds from t0 until each daemon's REST port answers (sweeps every 20 ms); raises on a dead one."""
    ready: dict[int, float] = {}
    deadline = t0 + READY_TIMEOUT_S
    while len(ready) < len(procs):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(procs) - len(ready)} daemon(s) not ready after {READY_TIMEOUT_S:.0f} s")
        for i, d in enumerate(procs):
            if i in ready:
                continue
            assert d.proc is not None
            if d.proc.poll() is not None:
                raise RuntimeError(f"{d.log_path.name}: exited with {d.proc.returncode}\n{d.log()[-2000:]}")
            if _answers(d):
                ready[i] = time.perf_counter() - t0
        time.sleep(0.02)
    return [ready[i] for i in range(len(procs))]


def _wait_visible(
    nodes: list[str], seen_by: Any, expected: dict[str, int], t0: float
) -> tuple[float | None, int, bool]:
    """Poll until every node lists every other's expected capacity.

    `seen_by(name) -> {peer_id: cpu_mhz}`; `nodes` are names, in the same order as `expected`'s keys.
    Returns (seconds from t0 or None on timeout, pairs seen at the end, still all visible on a re-check).
    """
    ids = list(expected)
    done: dict[int, float] = {}
    seen_pairs = 0
    deadline = t0 + DISCOVERY_TIMEOUT_S
    while time.perf_counter() < deadline and len(done) < len(nodes):
        seen_pairs = 0
        for i, name in enumerate(nodes):
            want = {pid: mhz for pid, mhz in expected.items() if pid != ids[i]}
            if i in done:
                seen_pairs += len(want)
                continue
            try:
                seen = seen_by(name)
            except (OSError, ValueError, TimeoutError):
                continue
            seen_pairs += sum(1 for pid, mhz in want.items() if seen.get(pid) == mhz)
            if all(seen.get(pid) == mhz for pid, mhz in want.items()):
                done[i] = time.perf_counter() - t0
        time.sleep(POLL_S)
    if len(done) < len(nodes):
        return None, seen_pairs, False
    still = True
    for i, name in enumerate(nodes):
        seen = seen_by(name)
        if any(seen.get(pid) != mhz for pid, mhz in expected.items() if pid != ids[i]):
            still = False
    return max(done.values()), seen_pairs, still


def _messages(m: dict[str, Any]) -> int:
    """The p2p messages a node's counters show (node_proc `metrics` or /metrics, same names)."""
    rejected = m.get("records_rejected", 0)
    rejected = sum(rejected.values()) if isinstance(rejected, dict) else rejected
    keys = ("pings", "pings_served", "records_accepted", "records_published", "table_syncs")
    return int(sum(m.get(k, 0) for k in keys) + rejected)


def _prometheus(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("dms_p2p_") and " " in line:
            name, value = line.rsplit(" ", 1)
            key = name.removeprefix("dms_p2p_").split("{")[0].removesuffix("_total")
            out[key] = out.get(key, 0.0) + float(value)
    return out


def _bytes_sent(pids: list[int]) -> list[int]:
    """TCP bytes each process has sent on its open connections (`ss`: the kernel's per-socket count)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True).stdout
    sent = dict.fromkeys(pids, 0)
    owner: int | None = None
    for line in out.splitlines():
        m = re.search(r"pid=(\d+),", line)
        if m:
            owner = int(m[1])
            continue
        b = re.search(r"bytes_sent:(\d+)", line)
        if b and owner in sent:
            sent[owner] += int(b[1])
    return [sent[p] for p in pids]


def _links(connected: list[str], m: dict[str, Any]) -> tuple[Any, ...]:
    """What changes while a node's connections are still being built or trimmed: the peers it is connected
    to, and its trim and table-sync counts (one sync per new connection; a trim then a redial within one
    poll leaves the set as it was, not the counters). The daemons' /metrics has no sync count."""
    return tuple(sorted(connected)), m.get("connections_trimmed", 0), m.get("table_syncs", 0)


def _settle(links: list[Callable[[], tuple[Any, ...]]], t_ready: float) -> float | None:
    """Wait `--settle` seconds, then until no node's links have changed for SETTLED_QUIET_S (at most
    SETTLE_MAX_S). Returns the seconds from t_ready to the last change, or None when they never settled.

    Before that the nodes are still starting their network, not idle: the AutoConnector dials a new node's
    peers every 5 s, and from N = 10 on the trimmer closes connections past their 20 s grace period; each new
    connection costs an identify, a gossipsub hello and a table sync (bytes per node 5x the settled figure
    at N = 5 when the window started 5 s after discovery)."""
    time.sleep(settle_s())
    last = [read() for read in links]
    changed = time.perf_counter()
    deadline = changed + SETTLE_MAX_S
    while time.perf_counter() - changed < SETTLED_QUIET_S:
        if time.perf_counter() > deadline:
            return None
        time.sleep(1.0)
        now = [read() for read in links]
        if now != last:
            last, changed = now, time.perf_counter()
    return changed - t_ready


def _idle(pids: list[int], counters: list[Any], run: DiscoveryRun) -> None:
    """Per node CPU, messages and bytes a second over IDLE_WINDOW_S, once the connections have settled."""
    procs = [psutil.Process(p) for p in pids]
    cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
    io0 = _bytes_sent(pids)
    msg0 = [_messages(c()) for c in counters]
    t0 = time.perf_counter()
    time.sleep(IDLE_WINDOW_S)
    cpu1 = [sum(p.cpu_times()[:2]) for p in procs]
    io1 = _bytes_sent(pids)
    msg1 = [_messages(c()) for c in counters]
    dt = time.perf_counter() - t0
    run.node_cpu = [(b - a) / dt for a, b in zip(cpu0, cpu1, strict=True)]
    run.node_bytes = [max(0, b - a) / dt for a, b in zip(io0, io1, strict=True)]
    run.node_msgs = [(b - a) / dt for a, b in zip(msg0, msg1, strict=True)]
    run.cpu_s = sum(run.node_cpu)


class DaemonCluster(Cluster):
    def __init__(self, n: int, root: Path) -> None:
        super().__init__("daemons", n, root)
        self.hub = DmsProcess(root, "hub", p2p={"heartbeat_s": HEARTBEAT_S})
        self.hub.start(READY_TIMEOUT_S)
        self._onboard(self.hub, 1000)
        hub_addr = self.hub.get("/api/v1/peers/self")["addrs"][0]
        self.leaves = [
            DmsProcess(root, f"n{i}", p2p={"heartbeat_s": HEARTBEAT_S, "bootstrap_peers": [hub_addr]})
            for i in range(n - 1)
        ]
        for d in self.leaves:
            d.spawn()
        _wait_all_ready(self.leaves, time.perf_counter())
        for i, d in enumerate(self.leaves):
            self._onboard(d, 1001 + i)
        self.all = [self.hub, *self.leaves]
        self.expected = {d.get("/api/v1/peers/self")["peer_id"]: 1000 + i for i, d in enumerate(self.all)}
        self._stop_all()

    @staticmethod
    def _onboard(d: DmsProcess, cpu: int) -> None:
        total = d.get("/api/v1/onboarding/provisioned")
        body = {
            "cpu": cpu,
            "memory": total["memory"] // 5,
            "channel": "nunet-test",
            "payment_addr": PAYOUT,
            "ntx_price": 7,
        }
        _post(d.url + "/api/v1/onboarding/onboard", body)

    def _stop_all(self) -> None:
        for d in self.all:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.terminate()
        for d in self.all:
            with contextlib.suppress(Exception):
                d.terminate(timeout=20)
            d.stop()

    def run(self) -> DiscoveryRun:
        t0 = time.perf_counter()
        self.hub.spawn()
        hub_ready = _wait_all_ready([self.hub], t0)[0]
        t1 = time.perf_counter()
        for d in self.leaves:
            d.spawn()
        last_ready = max(_wait_all_ready(self.leaves, t1))
        t2 = time.perf_counter()
        by_name = {d.log_path.name: d for d in self.all}

        def seen_by(name: str) -> dict[str, int]:
            peers = _get(by_name[name].url + "/api/v1/peers/dht/dump", timeout=5)
            return {p["peer_id"]: p["capacity"]["cpu_mhz"] for p in peers}

        visible, seen, still = _wait_visible(list(by_name), seen_by, self.expected, t2)
        run = DiscoveryRun(hub_ready, last_ready, visible, seen, self.n * (self.n - 1), still)

        def counters(d: DmsProcess) -> Any:
            def read() -> dict[str, float]:
                with urllib.request.urlopen(d.url + "/metrics", timeout=5) as r:
                    return _prometheus(r.read().decode())

            return read

        def links(d: DmsProcess) -> Callable[[], tuple[Any, ...]]:
            def read() -> tuple[Any, ...]:
                peers = _get(d.url + "/api/v1/peers", timeout=5)
                return _links([p["ID"] for p in peers], counters(d)())

            return read

        run.settled_s = _settle([links(d) for d in self.all], t2)
        _idle([d.proc.pid for d in self.all if d.proc is not None], [counters(d) for d in self.all], run)
        self._stop_all()
        return run

    def close(self) -> None:
        self._stop_all()


class NodeCluster(Cluster):
    """Bare P2PNode processes (tests/network/node_proc.py): READY = listening with the advert published."""

    def __init__(self, n: int, root: Path) -> None:
        super().__init__("nodes", n, root)
        root.mkdir(parents=True, exist_ok=True)
        self.hub = NodeProc(
            root, "hub", heartbeat=HEARTBEAT_S, refresh=REFRESH_S, advert={**DEFAULT_ADVERT, "cpu_mhz": 1000}
        )
        self.hub.start(READY_TIMEOUT_S)  # learn its port and peer id; runs restart on the same ones
        self.hub.stop()
        self.leaves = [
            NodeProc(
                root,
                f"n{i}",
                heartbeat=HEARTBEAT_S,
                refresh=REFRESH_S,
                bootstrap=(self.hub.addr,),
                advert={**DEFAULT_ADVERT, "cpu_mhz": 1001 + i},
            )
            for i in range(n - 1)
        ]
        self.all = [self.hub, *self.leaves]

    def _stop_all(self) -> None:
        for node in self.all:
            if node.proc is not None:
                node.close_input()
        for node in self.all:
            if node.proc is not None:
                node.stop(timeout=15)

    def run(self) -> DiscoveryRun:
        t0 = time.perf_counter()
        self.hub.start(READY_TIMEOUT_S)
        hub_ready = time.perf_counter() - t0
        t1 = time.perf_counter()

        def start(node: NodeProc) -> float:
            node.start(READY_TIMEOUT_S)
            return time.perf_counter() - t1

        with ThreadPoolExecutor(len(self.leaves)) as pool:
            last_ready = max(pool.map(start, self.leaves))
        self.expected = {node.peer_id: (node.advert or {})["cpu_mhz"] for node in self.all}
        t2 = time.perf_counter()
        by_name = {node.name: node for node in self.all}

        def seen_by(name: str) -> dict[str, int]:
            return {pid: p["cpu_mhz"] for pid, p in by_name[name].peers().items()}

        visible, seen, still = _wait_visible(list(by_name), seen_by, self.expected, t2)
        run = DiscoveryRun(hub_ready, last_ready, visible, seen, self.n * (self.n - 1), still)

        def links(node: NodeProc) -> Callable[[], tuple[Any, ...]]:
            return lambda: _links(node.request("connected")["connected"], node.metrics())

        run.settled_s = _settle([links(node) for node in self.all], t2)
        _idle([node.proc.pid for node in self.all if node.proc is not None], [n.metrics for n in self.all], run)
        self._stop_all()
        return run

    def close(self) -> None:
        self._stop_all()


def discovery(kinds: list[str], sizes: list[int], runs: int) -> list[str]:
    rows: list[str] = []
    raw: dict[tuple[str, int], list[DiscoveryRun]] = {}
    with tempfile.TemporaryDirectory(prefix="dms-bench-net-") as d:
        for n in sizes:
            for kind in kinds:
                root = Path(d) / f"{kind}-{n}"
                print(f"discovery: preparing {n} {kind}", file=sys.stderr, flush=True)
                cluster: Cluster = DaemonCluster(n, root) if kind == "daemons" else NodeCluster(n, root)
                try:
                    for r in range(runs):
                        result = cluster.run()
                        print(f"  run {r + 1}: {result}", file=sys.stderr, flush=True)
                        raw.setdefault((kind, n), []).append(result)
                finally:
                    cluster.close()
    for (kind, n), results in raw.items():
        ok = [r.visible_s for r in results if r.visible_s is not None]
        failed = len(results) - len(ok)
        vis = f"{median(ok):.2f} s ({min(ok):.2f}-{max(ok):.2f})" if ok else "-"
        if failed:
            worst = min(results, key=lambda r: r.seen_pairs)
            vis += f"; {failed} run(s) not within {DISCOVERY_TIMEOUT_S:.0f} s ({worst.seen_pairs}/{worst.pairs} pairs)"
        if any(r.visible_s is not None and not r.still_visible for r in results):
            vis += "; a record was missing again on the re-check"
        what = "nunet-dms daemons" if kind == "daemons" else "bare P2PNode processes"
        hub = median([r.hub_ready_s for r in results])
        last = median([r.last_ready_s for r in results])
        cpu = median([r.cpu_s for r in results])
        settled_runs = [r.settled_s for r in results if r.settled_s is not None]
        settled = f"{median(settled_runs):.0f} s" if settled_runs else "-"
        if len(settled_runs) < len(results):
            settled += f"; {len(results) - len(settled_runs)} run(s) not within {SETTLE_MAX_S:.0f} s"
        node_cpu = [c for r in results for c in r.node_cpu]
        msgs = [m for r in results for m in r.node_msgs]
        sent = [b for r in results for b in r.node_bytes]
        rows.append(
            f"| {n} | {what} | {hub:.2f} s | {last:.2f} s | {vis} | {settled} | {cpu:.3f} "
            f"| {100 * median(node_cpu):.2f} % (max {100 * max(node_cpu):.2f} %) "
            f"| {median(msgs):.2f} (max {max(msgs):.2f}) | {median(sent):.0f} (max {max(sent):.0f}) |"
        )
    return rows


def discovery_section(kinds: list[str], sizes: list[int], runs: int) -> str:
    note = load_note()
    rows = discovery(kinds, sizes, runs)
    lines = [
        header("Discovery: N nodes around one bootstrap hub"),
        "",
        f"p2p.heartbeat_s {HEARTBEAT_S:g} (the default), loopback, every node onboarded with its own advertised CPU.",
        "Each run is a cold start of prepared data dirs: the hub first, then the N-1 others at once.",
        "READY: the REST port answers (daemons) / the node printed ready with its advert published (bare nodes).",
        "Visible: counted from the last READY until every node lists every other node with its exact capacity",
        f"(/api/v1/peers/dht, or node_proc's `peers`; polled every {POLL_S:g} s). Median of {runs} run(s), (min-max).",
        f"Settled: from the last READY until no node's connections (nor its trim and table-sync counts) changed for "
        f"{SETTLED_QUIET_S:g} s,",
        f"looked for from {settle_s():g} s after discovery (or its timeout) on, polled every second.",
        f"Idle: a {IDLE_WINDOW_S:g} s window once settled (or {SETTLE_MAX_S:g} s after the look began). Cores: all N",
        "processes together; per node: median over the nodes of all runs (max: the busiest node, usually the hub).",
        "Messages: pings (ours answered + peers' served) + records received (kept or not) + records published",
        "+ table syncs, from each",
        "node's own counters. Bytes: TCP bytes sent on the node's open connections (kernel counts, `ss -ti`).",
        "Defaults: p2p.record_refresh_s 120, p2p.conn_low/conn_high 3/5.",
        note,
        "",
        "| N | nodes | hub READY | last of N-1 READY (from their spawn) | all visible after last READY "
        "| connections settled after last READY | idle cores, all N | idle CPU per node | messages/s per node "
        "| bytes/s per node |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Floor: the bare P2PNode rows (no daemon on top). Goal: {GOAL}.",
        "",
    ]
    return "\n".join(lines)


# ----- (b) stream round trip -----


async def _echo_child() -> None:
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
        str(SELF),
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["discovery", "rtt", "all"], default="all")
    ap.add_argument("--kind", choices=["daemons", "nodes", "both"], default="both")
    ap.add_argument("--sizes", default="5,10,20")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exchanges", type=int, default=2000)
    ap.add_argument("--write", action="store_true")
    ap.add_argument(
        "--settle",
        type=float,
        default=IDLE_SETTLE_S,
        help="seconds after discovery before waiting for the connections to settle",
    )
    ap.add_argument("--echo-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo_child:
        asyncio.run(_echo_child())
        return
    os.environ["DMS_BENCH_SETTLE_S"] = str(args.settle)
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    sections = []
    if args.part in ("rtt", "all"):
        sections.append(rtt_section(args.exchanges))
        print(sections[-1], flush=True)
    if args.part in ("discovery", "all"):
        kinds = ["daemons", "nodes"] if args.kind == "both" else [args.kind]
        sizes = [int(s) for s in args.sizes.split(",")]
        sections.append(discovery_section(kinds, sizes, args.runs))
        print(sections[-1], flush=True)
    if args.write:
        for text in sections:
            append_results(text)


if __name__ == "__main__":
    main()
