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


def test_relayed_peer_expires_within_three_heartbeats(spawn: Spawn) -> None:
    """a - hub - c: a knows c only through gossip relayed by the hub, so only expiry can remove it."""
    hub = spawn("hub")
    a = spawn("a", bootstrap=(hub.addr,))
    c = spawn("c", bootstrap=(hub.addr,))
    wait_for("a sees c through the hub", lambda: c.peer_id in a.peers(), 10)

    c.kill9()
    killed = time.monotonic()
    wait_for("c leaves a's table", lambda: c.peer_id not in a.peers(), 3 * a.heartbeat, interval=0.05)
    assert time.monotonic() - killed <= 3 * a.heartbeat
    assert hub.peer_id in a.peers()  # the live ones stay


def test_withdrawn_advert_disappears_and_ping_errors(spawn: Spawn) -> None:
    a = spawn("a")
    b = spawn("b", bootstrap=(a.addr,))
    wait_for("a sees b", lambda: b.peer_id in a.peers(), 10)
    b.set_advert(None)
    wait_for("b's record expires at a", lambda: b.peer_id not in a.peers(), 3 * a.heartbeat)
    assert b.peer_id in a.request("connected")["connected"]  # still connected, just not offering

    assert a.ping("12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4")["error"]["type"] == "UnknownPeer"
    assert a.ping("not-a-peer")["error"]["type"] == "InvalidInput"


def test_dht_lookup_finds_a_peer_on_another_channel(spawn: Spawn) -> None:
    hub = spawn("hub")
    a = spawn("a", bootstrap=(hub.addr,))
    team = {**DEFAULT_ADVERT, "channel": "nunet-team", "cpu_mhz": 777}
    x = spawn("x", bootstrap=(hub.addr,), channel="nunet-team", advert=team)
    wait_for("x stored its record in the DHT", lambda: x.metrics()["dht_puts"] >= 2, 15)
    assert x.peer_id not in a.peers()  # other channel: not in a's table...
    assert hub.metrics()["records_rejected"].get("wrong_channel", 0) >= 1  # ...nor the hub's
    assert a.request("lookup", peer_id=x.peer_id)["record"] == {"channel": "nunet-team", "cpu_mhz": 777}
    assert a.request("lookup", peer_id=hub.peer_id)["record"]["channel"] == "nunet-test"  # from the table
    assert a.request("lookup", peer_id="12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4")["record"] is None


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
        wait_for("a drops the dead connection", lambda: b.peer_id not in a.request("connected")["connected"], 10)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_for("b is back once it answers again", lambda: b.peer_id in a.peers(), 10)
