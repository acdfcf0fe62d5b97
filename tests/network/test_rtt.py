"""RTT-aware placement with a real slow link: one provider is reached through a relay that adds 100 ms each way."""

from __future__ import annotations

from collections.abc import Callable

from dms.matching import Candidate, Needs, place
from tests.network.delay_relay import DelayRelay
from tests.network.node_proc import DEFAULT_ADVERT, NodeProc, wait_for

Spawn = Callable[..., NodeProc]


def candidates(sp: NodeProc, prices: dict[str, int]) -> list[Candidate]:
    return [
        Candidate(
            peer_id=pid,
            channel=p["channel"],
            available=True,
            cpu_mhz=p["cpu_mhz"],
            cores=2,
            memory_mb=1024,
            gpus=(),
            ntx_price=prices[pid],
            executors=("docker",),
            rtt_s=p["rtt_s"],
        )
        for pid, p in sp.peers().items()
    ]


def test_the_provider_behind_the_slow_link_is_passed_over(spawn: Spawn) -> None:
    fast = spawn("fast")
    slow = spawn("slow", advert={**DEFAULT_ADVERT, "ntx_price": 1})  # cheaper: price alone would pick it
    with DelayRelay(slow.port, 0.1) as relay:
        via_relay = f"/ip4/127.0.0.1/tcp/{relay.port}/p2p/{slow.peer_id}"
        # The SP reaches `slow` only through the relay (2 connections: no AutoConnector dials past them).
        sp = spawn("sp", bootstrap=(fast.addr, via_relay), advert=None, conns=(2, 2))

        def measured() -> bool:
            peers = sp.peers()
            return all(peers.get(p.peer_id, {}).get("rtt_s") for p in (fast, slow))

        wait_for("the SP measured both RTTs", measured, 20)
        wait_for("the slow link's RTT shows", lambda: sp.peers()[slow.peer_id]["rtt_s"] > 0.2, 10)
        assert sp.peers()[fast.peer_id]["rtt_s"] < 0.1

        prices = {fast.peer_id: DEFAULT_ADVERT["ntx_price"], slow.peer_id: 1}  # node_proc's peers leave it out
        needs = Needs(channel="nunet-test", cpu_mhz=100, cores=1, memory_mb=64, duration_s=10, max_price=10**18)
        assert next(r.candidate.peer_id for r in place(candidates(sp, prices), needs).ranked) == slow.peer_id

        hard = place(candidates(sp, prices), Needs(**{**needs.__dict__, "max_rtt_ms": 100}))
        assert [r.candidate.peer_id for r in hard.ranked] == [fast.peer_id]
        assert dict(hard.rejected)[slow.peer_id].startswith("RTT ")
        assert dict(hard.rejected)[slow.peer_id].endswith(" ms is above max_rtt_ms 100")

        soft = place(candidates(sp, prices), Needs(**{**needs.__dict__, "preferred_rtt_ms": 100}))
        assert [r.candidate.peer_id for r in soft.ranked] == [fast.peer_id, slow.peer_id]
