"""The idle part of bench/network.py's discovery benchmark: wait until the nodes' connections have settled,
then measure each node's CPU, p2p messages and TCP bytes sent over a window.

Before the connections settle the nodes are still building their network, not idle: the AutoConnector dials a
new node's peers every 5 s, and from N = 10 on the trimmer closes connections past their 20 s grace period;
each new connection costs an identify, a gossipsub hello and a table sync. A window that started 5 s after
discovery measured that (bytes per node at N = 5 about 5x the settled figure, rising with N).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

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


def messages(m: dict[str, Any]) -> int:
    """The p2p messages a node's counters show (node_proc `metrics` or /metrics, same names)."""
    rejected = m.get("records_rejected", 0)
    rejected = sum(rejected.values()) if isinstance(rejected, dict) else rejected
    keys = ("pings", "pings_served", "records_accepted", "records_published", "table_syncs")
    return int(sum(m.get(k, 0) for k in keys) + rejected)


def prometheus(text: str) -> dict[str, float]:
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


def link_state(connected: list[str], m: dict[str, Any]) -> tuple[Any, ...]:
    """What changes while a node's connections are still being built or trimmed: the peers it is connected
    to, and its trim and table-sync counts (one sync per new connection; a trim then a redial within one
    poll leaves the set as it was, not the counters). The daemons' /metrics has no sync count."""
    return tuple(sorted(connected)), m.get("connections_trimmed", 0), m.get("table_syncs", 0)


def settle(links: list[Callable[[], tuple[Any, ...]]], t_ready: float) -> float | None:
    """Wait `--settle` seconds, then until no node's links have changed for SETTLED_QUIET_S (at most
    SETTLE_MAX_S). Returns the seconds from t_ready to the last change, or None when they never settled
    (before that the nodes are still building their network: the module's docstring)."""
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


def idle(pids: list[int], counters: list[Any], run: DiscoveryRun) -> None:
    """Per node CPU, messages and bytes a second over IDLE_WINDOW_S, once the connections have settled."""
    procs = [psutil.Process(p) for p in pids]
    cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
    io0 = _bytes_sent(pids)
    msg0 = [messages(c()) for c in counters]
    t0 = time.perf_counter()
    time.sleep(IDLE_WINDOW_S)
    cpu1 = [sum(p.cpu_times()[:2]) for p in procs]
    io1 = _bytes_sent(pids)
    msg1 = [messages(c()) for c in counters]
    dt = time.perf_counter() - t0
    run.node_cpu = [(b - a) / dt for a, b in zip(cpu0, cpu1, strict=True)]
    run.node_bytes = [max(0, b - a) / dt for a, b in zip(io0, io1, strict=True)]
    run.node_msgs = [(b - a) / dt for a, b in zip(msg0, msg1, strict=True)]
    run.cpu_s = sum(run.node_cpu)
