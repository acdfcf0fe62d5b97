"""Liveness pings: one a heartbeat per connection between both sides (a peer's ping is a sign of life too)."""

from __future__ import annotations

import time
from collections.abc import Callable

from dms.network.liveness import QUIET_HB, RTT_EVERY_HB, should_ping
from tests.network.node_proc import NodeProc, wait_for

Spawn = Callable[..., NodeProc]


def test_we_ping_only_when_the_peer_was_quiet_or_our_rtt_is_old() -> None:
    hb = 2.0
    assert should_ping(10.0, heard=0.0, measured=0.0, heartbeat_s=hb)  # nothing heard for 5 heartbeats
    assert should_ping(10.0, heard=10.0, measured=None, heartbeat_s=hb)  # no RTT of our own yet
    assert not should_ping(10.0, heard=10.0 - (QUIET_HB * hb - 0.1), measured=9.0, heartbeat_s=hb)
    assert should_ping(10.0, heard=10.0 - QUIET_HB * hb, measured=9.0, heartbeat_s=hb)
    assert should_ping(20.0, heard=20.0, measured=20.0 - RTT_EVERY_HB * hb, heartbeat_s=hb)


def pings(n: NodeProc) -> tuple[int, int]:
    m = n.metrics()
    return m["pings"], m["pings_served"]


def test_two_peers_share_one_ping_a_heartbeat_and_both_know_the_rtt(spawn: Spawn) -> None:
    """Both sides pinging every heartbeat (as before) makes 2 round trips a heartbeat; now one side answers the
    other's ping instead of sending its own, so the pair makes about one (plus a rarer RTT ping each way)."""
    hb = 0.5
    a = spawn("a", heartbeat=hb)
    b = spawn("b", heartbeat=hb, bootstrap=(a.addr,))

    def both_measured() -> bool:
        return bool(a.peers().get(b.peer_id, {}).get("rtt_s") and b.peers().get(a.peer_id, {}).get("rtt_s"))

    wait_for("both measured an RTT", both_measured, 10)
    start = [pings(a), pings(b)]
    t0 = time.monotonic()
    want = 16

    def round_trips() -> int:
        return sum(p[0] - s[0] for p, s in zip([pings(a), pings(b)], start, strict=True))

    wait_for(f"{want} round trips", lambda: round_trips() >= want, 30, interval=0.05)
    took = time.monotonic() - t0
    assert round_trips() <= 1.3 * took / hb + 2, (round_trips(), took)
    served = sum(p[1] - s[1] for p, s in zip([pings(a), pings(b)], start, strict=True))
    assert abs(served - round_trips()) <= 2  # every ping was answered by the other side's handler
