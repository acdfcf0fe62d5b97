"""Bounded connections: the pure trimming choice, and six real nodes kept between their water marks."""

from __future__ import annotations

from collections.abc import Callable

from dms.network.connections import Conn, choose_trim
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
