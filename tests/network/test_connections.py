"""Bounded connections: the pure trimming choice, and six real nodes kept between their water marks."""

from __future__ import annotations

import time
from collections.abc import Callable

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr

from dms.network import NetworkSettings
from dms.network.connections import Conn, choose_trim
from dms.network.host import as_swarm, build_host, max_connections
from tests.network.node_proc import DEFAULT_ADVERT, NodeProc, wait_for

Spawn = Callable[..., NodeProc]


def conn(pid: str, *, age: float = 100, ours: bool = True, rtt: float | None = 0.001) -> Conn:
    return Conn(pid, age, ours, rtt)


def test_nothing_is_trimmed_up_to_the_high_water_mark() -> None:
    conns = [conn(f"p{i}") for i in range(4)]
    assert choose_trim(conns, low=2, high=4, protected=frozenset(), grace_s=10) == []


def test_the_least_useful_go_first_down_to_the_middle() -> None:
    conns = [
        conn("useful"),
        conn("slow", rtt=0.5),
        conn("other-channel", ours=False),
        conn("unmeasured", rtt=None),
        conn("young", age=1),
        conn("bootstrap", ours=False),
    ]
    chosen = choose_trim(conns, low=2, high=4, protected=frozenset({"bootstrap"}), grace_s=10)
    assert chosen == ["other-channel", "unmeasured", "slow"]  # 6 down to (2 + 4) // 2 = 3


def test_protected_and_young_connections_stay_even_above_the_mark() -> None:
    conns = [conn("a", age=1), conn("b", age=2), conn("job"), conn("c")]
    assert choose_trim(conns, low=1, high=2, protected=frozenset({"job"}), grace_s=10) == ["c"]


def test_six_nodes_stay_between_the_marks_and_still_see_everyone(spawn: Spawn) -> None:
    """Every leaf bootstraps from the hub, which must trim; records still reach everyone by relaying,
    trimmed peers keep their records, and a change still travels through the relays."""
    marks = (2, 3)
    hub = spawn("hub", conns=marks, advert={**DEFAULT_ADVERT, "cpu_mhz": 1000})
    leaves = [
        spawn(f"n{i}", conns=marks, bootstrap=(hub.addr,), advert={**DEFAULT_ADVERT, "cpu_mhz": 1001 + i})
        for i in range(5)
    ]
    nodes = [hub, *leaves]

    def everyone_sees_everyone() -> bool:
        for n in nodes:
            seen = {pid: p["cpu_mhz"] for pid, p in n.peers().items()}
            want = {m.peer_id: (m.advert or {})["cpu_mhz"] for m in nodes if m is not n}
            if seen != want:
                return False
        return True

    wait_for("all six see the five others", everyone_sees_everyone, 15, interval=0.25)
    wait_for(
        "the hub trims down to its high water mark",
        lambda: len(hub.request("connected")["connected"]) <= marks[1] and hub.metrics()["connections_trimmed"] >= 1,
        40,
        interval=0.5,
    )
    assert everyone_sees_everyone()  # trimmed peers are alive: their records stay
    leaves[0].set_advert({**DEFAULT_ADVERT, "cpu_mhz": 5555})
    for n in [hub, *leaves[1:]]:
        wait_for(f"{n.name} sees the change", lambda n=n: n.peers()[leaves[0].peer_id]["cpu_mhz"] == 5555, 5)  # type: ignore[misc]
    for n in nodes:
        assert 1 <= len(n.request("connected")["connected"]) <= marks[1] + 1, n.name
    # ...and then they settle: no dial, trim and redial going round for good (an idle node's cost would then
    # include a connection's identify, gossipsub hello and table sync every few seconds, growing with N).
    wait_for("no node's connections change for 15 s", _settled(nodes, quiet_s=15), 60, interval=1)


def _links(node: NodeProc) -> tuple[object, ...]:
    m = node.metrics()
    return tuple(sorted(node.request("connected")["connected"])), m["connections_trimmed"], m["table_syncs"]


def _settled(nodes: list[NodeProc], quiet_s: float) -> Callable[[], bool]:
    """A check for wait_for: true once no node's connections, trims and table syncs (one per new connection)
    have changed for `quiet_s` (the AutoConnector runs every 5 s, the trimmer every 2 heartbeats)."""
    last: list[tuple[object, ...]] = []
    changed = time.monotonic()

    def check() -> bool:
        nonlocal last, changed
        now = [_links(n) for n in nodes]
        if now != last:
            last, changed = now, time.monotonic()
        return time.monotonic() - changed >= quiet_s

    return check


def test_the_hard_cap_is_well_above_the_high_water_mark() -> None:
    assert max_connections(8) == 64 and max_connections(1) == 36


def test_a_node_accepts_connections_for_good_not_only_its_first_few(spawn: Spawn) -> None:
    """py-libp2p 0.8.1 held an inbound slot until the swarm stopped, not until the connection closed: a node
    refused every inbound connection after (max_connections - 1) in its lifetime (a 40-node hub took 23)."""
    hub = spawn("hub", conns=(1, 1))
    rounds = max_connections(1) + 2

    async def churn() -> int:
        settings = NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",), channel="nunet-test")
        host = build_host(settings, create_new_key_pair(), lambda _: None, lambda _: None)
        info = info_from_p2p_addr(multiaddr.Multiaddr(hub.addr))
        done = 0
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            for _ in range(rounds):
                with trio.fail_after(10):
                    await host.connect(info)
                    await as_swarm(host).close_peer(info.peer_id)
                done += 1
            await host.close()
        return done

    assert trio.run(churn) == rounds
    assert hub.metrics()["bad_handshakes"] == 0
