"""Two or three real node processes on 127.0.0.1: discovery, adverts, liveness, restart, ping."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.network.node_proc import DEFAULT_ADVERT, NodeProc, wait_for

Spawn = Callable[..., NodeProc]


def test_bootstrap_discovery_and_advert_change(spawn: Spawn) -> None:
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("a and b see each other's record", lambda: b.peer_id in a.peers() and a.peer_id in b.peers(), 10)
    seen = a.peers()[b.peer_id]
    assert seen["cpu_mhz"] == DEFAULT_ADVERT["cpu_mhz"] and seen["channel"] == "nunet-test"
    assert seen["addrs"] == [b.addr.rsplit("/p2p/", 1)[0]] and seen["connected"]

    b.set_advert({**DEFAULT_ADVERT, "cpu_mhz": 3333})
    took = wait_for("a sees b's new advert", lambda: a.peers()[b.peer_id]["cpu_mhz"] == 3333, 2.0, interval=0.05)
    assert took < 2.0

    rtt = a.ping(b.peer_id)["rtt_s"]
    assert 0 < rtt < 1


def test_killed_peer_leaves_and_comes_back_with_the_same_id(spawn: Spawn) -> None:
    """b bootstraps from a; a dies and restarts: b must dial it again despite libp2p's failed-dial block list."""
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("b sees a", lambda: a.peer_id in b.peers(), 10)
    old_id = a.peer_id

    a.kill9()
    killed = time.monotonic()
    wait_for("a leaves b's table", lambda: a.peer_id not in b.peers(), 3 * b.heartbeat, interval=0.05)
    assert time.monotonic() - killed <= 3 * b.heartbeat
    wait_for("b's redials fail meanwhile", lambda: b.metrics()["dial_failures"] >= 1, 10)

    a.start()  # same identity file, same port
    assert a.peer_id == old_id
    wait_for("b dials a again and sees it", lambda: old_id in b.peers() and b.peer_id in a.peers(), 20)
    assert b.ping(old_id)["rtt_s"] > 0


def test_idle_connected_peers_stay_without_records(spawn: Spawn) -> None:
    """Liveness of a connected peer comes from pings on its connection, not from re-published records."""
    a = spawn("a", refresh=600)
    b = spawn("b", bootstrap=(a.addr,), refresh=600)
    wait_for("a and b see each other", lambda: b.peer_id in a.peers() and a.peer_id in b.peers(), 10)
    wait_for("b announced itself once after joining", lambda: b.metrics()["records_published"] >= 2, 10)
    published = b.metrics()["records_published"]
    wait_for("b's record is older than 4 heartbeats at a", lambda: a.peers()[b.peer_id]["age_s"] > 4 * a.heartbeat, 10)
    seen = a.peers()[b.peer_id]
    pings = a.metrics()["pings"] + a.metrics()["pings_served"]  # ours answered, or b's (one side pings)
    assert seen["connected"] and 0 < seen["rtt_s"] < 1 and pings >= 3
    assert b.metrics()["records_published"] == published  # nothing re-gossiped meanwhile
    b.set_advert({**DEFAULT_ADVERT, "cpu_mhz": 4444})  # a change still goes out at once
    wait_for("a sees b's change", lambda: a.peers()[b.peer_id]["cpu_mhz"] == 4444, 2.0, interval=0.05)


def test_relayed_peers_leave_at_once_on_a_clean_stop_and_at_ttl_when_killed(spawn: Spawn) -> None:
    """a - hub - c, d: a knows c and d only by gossip relayed through the hub (one connection each)."""
    refresh = 2.0  # TTL = 2.5 x refresh + heartbeat = 6 s
    hub = spawn("hub", refresh=refresh)
    a, c, d = (spawn(n, bootstrap=(hub.addr,), refresh=refresh, conns=(1, 1)) for n in ("a", "c", "d"))
    wait_for("a sees c and d through the hub", lambda: {c.peer_id, d.peer_id} <= a.peers().keys(), 10)
    assert set(a.request("connected")["connected"]) == {hub.peer_id}

    c.stop()  # clean: its signed leaving record goes out first
    stopped = time.monotonic()
    wait_for("c leaves a's table", lambda: c.peer_id not in a.peers(), 2.0, interval=0.05)
    assert time.monotonic() - stopped < 2.0

    d.kill9()  # no last will: a, not connected to d, keeps its record until the TTL passes
    killed = time.monotonic()
    wait_for("d leaves a's table at its TTL", lambda: d.peer_id not in a.peers(), 2.5 * refresh + 3, interval=0.1)
    assert time.monotonic() - killed > a.heartbeat  # not at once: nobody vouched for its end
    assert hub.peer_id in a.peers()  # the live ones stay


def test_withdrawn_advert_disappears_and_ping_errors(spawn: Spawn) -> None:
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("a sees b", lambda: b.peer_id in a.peers(), 10)
    b.set_advert(None)  # its leaving record tells a at once
    wait_for("b's record leaves a", lambda: b.peer_id not in a.peers(), 2.0, interval=0.05)
    assert b.peer_id in a.request("connected")["connected"]  # still connected, just not offering

    assert a.ping("12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4")["error"]["type"] == "UnknownPeer"
    assert a.ping("not-a-peer")["error"]["type"] == "InvalidInput"


def test_hung_peer_leaves_within_three_heartbeats(spawn: Spawn) -> None:
    """SIGSTOP: the TCP connection stays open, the peer just stops answering."""
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("a sees b", lambda: b.peer_id in a.peers(), 10)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        wait_for("b leaves a's table", lambda: b.peer_id not in a.peers(), 3 * a.heartbeat, interval=0.05)
        assert time.monotonic() - stopped <= 3 * a.heartbeat
        wait_for("a drops the dead connection", lambda: b.peer_id not in a.request("connected")["connected"], 15)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_for("b is back once it answers again", lambda: b.peer_id in a.peers(), 10)
