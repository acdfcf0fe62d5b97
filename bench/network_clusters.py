"""The clusters of bench/network.py's discovery benchmark: N nunet-dms daemons, or N bare P2PNode processes
(tests/network/node_proc.py), around one bootstrap hub, prepared once and started cold for each run.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from network_idle import DiscoveryRun, idle, link_state, prometheus, settle

from tests.network.node_proc import DEFAULT_ADVERT, NodeProc
from tests.procs import DmsProcess

HEARTBEAT_S = 2.0
REFRESH_S = 120.0
"""p2p.record_refresh_s, the daemon's default (node_proc's own default, 60 s, is for tests)."""
READY_TIMEOUT_S = 180.0
DISCOVERY_TIMEOUT_S = 60.0
POLL_S = 0.5
PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


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
                    return prometheus(r.read().decode())

            return read

        def links(d: DmsProcess) -> Callable[[], tuple[Any, ...]]:
            def read() -> tuple[Any, ...]:
                peers = _get(d.url + "/api/v1/peers", timeout=5)
                return link_state([p["ID"] for p in peers], counters(d)())

            return read

        run.settled_s = settle([links(d) for d in self.all], t2)
        idle([d.proc.pid for d in self.all if d.proc is not None], [counters(d) for d in self.all], run)
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
            return lambda: link_state(node.request("connected")["connected"], node.metrics())

        run.settled_s = settle([links(node) for node in self.all], t2)
        idle([node.proc.pid for node in self.all if node.proc is not None], [n.metrics for n in self.all], run)
        self._stop_all()
        return run

    def close(self) -> None:
        self._stop_all()
