"""Ten real node processes around one bootstrap hub: every node sees the capacity of all nine others."""

from __future__ import annotations

from collections.abc import Callable

from tests.network.node_proc import DEFAULT_ADVERT, NodeProc, wait_for

Spawn = Callable[..., NodeProc]


def test_ten_nodes_all_see_each_other(spawn: Spawn) -> None:
    hb = 2.0  # the default heartbeat: this test is about discovery at scale, not about fast expiry
    hub = spawn("hub", heartbeat=hb, advert={**DEFAULT_ADVERT, "cpu_mhz": 1000})
    leaves = [
        spawn(f"n{i}", heartbeat=hb, bootstrap=(hub.addr,), advert={**DEFAULT_ADVERT, "cpu_mhz": 1001 + i})
        for i in range(9)
    ]
    nodes = [hub, *leaves]
    expected = {n.peer_id: n.advert["cpu_mhz"] for n in nodes if n.advert}

    def everyone_sees_everyone() -> bool:
        for n in nodes:
            seen = {pid: p["cpu_mhz"] for pid, p in n.peers().items()}
            if seen != {pid: mhz for pid, mhz in expected.items() if pid != n.peer_id}:
                return False
        return True

    wait_for("all ten nodes see the nine others' records", everyone_sees_everyone, 20, interval=0.25)
