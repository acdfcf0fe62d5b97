"""Several hosts for real: daemons each in its own network namespace, on a private bridge (tests/netns.py).

Discovery through a bootstrap peer across the bridge, and mDNS with no bootstrap peer at all. mDNS runs
only here, inside namespaces this test made (docs/testing.md, "Network rules"); the namespaces and every
daemon go at the end, failed or not. Needs root: without it the tests fail, saying so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PAYOUT
from tests.netns import P2P_PORT, Lan, NetnsError, NsDaemon
from tests.procs import wait_for

READY_S = 60.0
DISCOVERY_S = 30.0
SHARES = (0.2, 0.5, 0.8)  # of the machine, one per node, so every node advertises different capacity


class Cluster:
    """A Lan and the daemons started in it; `close` kills the daemons, then deletes the namespaces."""

    def __init__(self, n: int, root: Path) -> None:
        try:
            self.lan = Lan(n).__enter__()
            error = None
        except NetnsError as e:
            error = str(e)
        if error is not None:  # a failure, never a skip: these tests are how multi-host networking is checked
            pytest.fail(f"cannot build the test network: {error}", pytrace=False)
        self.root = root
        self.daemons: list[NsDaemon] = []

    def spawn(self, i: int, **sections: dict[str, Any]) -> NsDaemon:
        d = NsDaemon(self.lan.nodes[i], self.root, f"node{i + 1}", **sections)
        self.daemons.append(d)
        return d.spawn()

    def close(self) -> None:
        for d in self.daemons:
            d.stop()
        for d in self.daemons:  # pytest shows a teardown's output only when the test failed
            print(f"----- {d.name} ({d.node.ns}, {d.node.ip}) -----\n{d.log()[-4000:]}")
        self.lan.close()
        left = self.lan.exists()
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[[int], Cluster]]:
    made: list[Cluster] = []

    def make(n: int) -> Cluster:
        c = Cluster(n, tmp_path)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def onboard(d: NsDaemon, share: float) -> None:
    m = d.get("/api/v1/onboarding/provisioned")
    d.post(
        "/api/v1/onboarding/onboard",
        {
            "memory": int(m["memory"] * share),
            "cpu": int(m["cpu"] * share),
            "channel": "nunet-test",
            "payment_addr": PAYOUT,
            "ntx_price": 7,
        },
    )


def known(d: NsDaemon) -> dict[str, dict[str, Any]]:
    return {p["peer_id"]: p for p in d.get("/api/v1/peers/dht/dump")}


def addr_ip(addr: str) -> str:
    parts = addr.split("/")  # ["", "ip4", ip, "tcp", port, ...]
    assert parts[1] == "ip4", addr
    return parts[2]


def check_own_addrs(d: NsDaemon, me: dict[str, Any]) -> None:
    """A node advertises its veth address and port, never a wildcard or loopback."""
    assert me["addrs"], me
    for addr in me["addrs"]:
        ip = ipaddress.ip_address(addr_ip(addr))
        assert not ip.is_unspecified and not ip.is_loopback, addr
        assert addr.startswith(f"/ip4/{d.node.ip}/tcp/{P2P_PORT}"), (addr, d.node.ip)


def sees_all(daemons: list[NsDaemon], ids: dict[str, str]) -> bool:
    """Every node has every other one in its peer table, with capacity, at the other's veth address."""
    for d in daemons:
        table = known(d)
        for other in daemons:
            if other is d:
                continue
            p = table.get(ids[other.name])
            if p is None or not p["capacity"] or not p["addrs"]:
                return False
    return True


def check_tables(daemons: list[NsDaemon], ids: dict[str, str]) -> None:
    """What each node knows of the others is what they advertise: free capacity and veth addresses."""
    free = {d.name: d.get("/api/v1/onboarding/status")["free"] for d in daemons}
    for d in daemons:
        table = known(d)
        assert set(table) == {ids[o.name] for o in daemons if o is not d}, (d.name, sorted(table))
        for other in daemons:
            if other is d:
                continue
            p = table[ids[other.name]]
            assert p["capacity"]["channel"] == "nunet-test"
            assert p["capacity"]["cpu_mhz"] == free[other.name]["cpu"], (d.name, other.name, p["capacity"])
            assert p["capacity"]["memory_mb"] == free[other.name]["memory"], (d.name, other.name, p["capacity"])
            assert p["capacity"]["payment_addr"] == PAYOUT and p["capacity"]["ntx_price"] == 7
            assert {addr_ip(a) for a in p["addrs"]} == {other.node.ip}, (d.name, other.name, p["addrs"])


def test_three_hosts_discover_each_other_through_a_bootstrap_peer(cluster: Callable[[int], Cluster]) -> None:
    c = cluster(3)
    n1 = c.spawn(0).wait_ready(READY_S)
    me1 = n1.get("/api/v1/peers/self")
    check_own_addrs(n1, me1)
    boot = f"/ip4/{n1.node.ip}/tcp/{P2P_PORT}/p2p/{me1['peer_id']}"
    rest = [c.spawn(i, p2p={"bootstrap_peers": [boot]}) for i in (1, 2)]
    onboard(n1, SHARES[0])
    for i, d in enumerate(rest, start=1):
        d.wait_ready(READY_S)
        onboard(d, SHARES[i])
    daemons = [n1, *rest]
    ids = {}
    for d in daemons:
        me = d.get("/api/v1/peers/self")
        check_own_addrs(d, me)
        ids[d.name] = me["peer_id"]
    assert len(set(ids.values())) == 3

    wait_for(lambda: sees_all(daemons, ids), DISCOVERY_S, "every node sees the other two with their capacity")
    check_tables(daemons, ids)

    # The bootstrap node's connections come in from the other hosts' own addresses, across the bridge.
    conns = {p["peer_id"]: p["addrs"] for p in n1.get("/api/v1/peers")}
    for d in rest:
        assert {addr_ip(a) for a in conns[ids[d.name]]} == {d.node.ip}, conns
    # Nodes 2 and 3 know each other only from records: the advertised address is dialable.
    n2, n3 = rest
    assert n2.get(f"/api/v1/peers/ping/{ids[n3.name]}")["rtt_ms"] > 0

    # An artifact crosses the bridge on the direct path (docs/artifacts.md): n1 listens on its veth
    # address, n2 dials the address of its libp2p connection to n1.
    body = os.urandom(1_500_000).hex()  # uploaded as its JSON text
    data = json.dumps(body).encode()
    sha = hashlib.sha256(data).hexdigest()
    assert n1.post("/api/v1/artifacts", body)["sha256"] == sha
    assert n2.post(f"/api/v1/artifacts/{sha}/fetch", {"peer_id": ids[n1.name]}) == {"sha256": sha, "size": len(data)}
    assert n2.metric("dms_artifact_transfers_direct_total") == 1
    assert n1.metric("dms_artifact_transfers_direct_total") == 1


def test_mdns_finds_peers_without_bootstrap(cluster: Callable[[int], Cluster]) -> None:
    """Two nodes start together and find each other; a third joins later and all find it (no bootstrap)."""
    c = cluster(3)
    ids: dict[str, str] = {}

    def start(daemons: list[NsDaemon]) -> None:
        for d in daemons:
            d.wait_ready(READY_S)
            assert d.proc is not None
            # mDNS (zeroconf binds every interface it sees) runs only inside our namespaces.
            assert os.readlink(f"/proc/{d.proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"), d.name
            me = d.get("/api/v1/peers/self")
            check_own_addrs(d, me)
            ids[d.name] = me["peer_id"]
            onboard(d, SHARES[int(d.name[-1]) - 1])

    mdns = {"mdns": True, "bootstrap_peers": []}
    # The first two listen on the wildcard, as the shipped config does: each must announce its veth address
    # by mDNS (an announced 0.0.0.0 would have the other dial itself).
    wildcard = {**mdns, "listen_address": [f"/ip4/0.0.0.0/tcp/{P2P_PORT}"]}
    first = [c.spawn(i, p2p=wildcard) for i in (0, 1)]
    start(first)
    t0 = time.monotonic()
    wait_for(lambda: sees_all(first, ids), DISCOVERY_S, "the first two nodes find each other by mDNS")
    took_first = time.monotonic() - t0
    check_tables(first, ids)

    late = c.spawn(2, p2p=mdns)  # listens on its veth address
    start([late])
    daemons = [*first, late]
    t0 = time.monotonic()

    def connected_to_all() -> bool:
        """Dialled directly after mDNS, not only heard of through a third node (gossip may come first)."""
        return all({p["peer_id"] for p in d.get("/api/v1/peers")} == set(ids.values()) - {ids[d.name]} for d in daemons)

    wait_for(
        lambda: sees_all(daemons, ids) and connected_to_all(),
        DISCOVERY_S,
        "a node that joins later is found by mDNS, finds both, and each pair is connected directly",
    )
    took_late = time.monotonic() - t0
    check_tables(daemons, ids)
    print(f"mDNS discovery: {took_first:.1f} s for the first two, {took_late:.1f} s for the late joiner")
