"""Matching and pricing as pure functions: given these providers, this job goes there (Nomad-style harness)."""

from __future__ import annotations

import dataclasses

import pytest

from dms.jobs.states import CPState, InvalidTransition, SPState, transition
from dms.matching import Candidate, Needs, place
from dms.network.model import GpuOffer
from dms.pricing import job_price

A100 = GpuOffer("nvidia", "A100", 81920)
MI210 = GpuOffer("amd", "MI210", 65536)


def cp(peer: str, **kw: object) -> Candidate:
    base = dict(
        peer_id=peer,
        channel="nunet-test",
        available=True,
        cpu_mhz=4000,
        cores=4,
        memory_mb=8000,
        gpus=(),
        ntx_price=1000,
        executors=("docker",),
        rtt_s=0.01,
    )
    return Candidate(**{**base, **kw})  # type: ignore[arg-type]


NEEDS = Needs(channel="nunet-test", cpu_mhz=1000, cores=1, memory_mb=512, duration_s=60, max_price=10**18)


def order(cands: list[Candidate], needs: Needs = NEEDS) -> list[str]:
    return [r.candidate.peer_id for r in place(cands, needs).ranked]


def test_price_is_ceil_of_rate_times_mhz_times_seconds() -> None:
    assert job_price(1000, 1000, 60) == 60_000
    assert job_price(1, 1, 1) == 1  # 0.001 wei rounds up
    assert job_price(10**18, 2500, 3600) == 10**18 * 9000
    assert job_price(0, 5000, 100) == 0
    with pytest.raises(ValueError):
        job_price(-1, 1, 1)


def test_cheapest_first_then_fastest_then_most_headroom_then_peer_id() -> None:
    assert order([cp("b", ntx_price=2000), cp("a", ntx_price=3000), cp("c", ntx_price=1000)]) == ["c", "b", "a"]
    assert order([cp("slow", rtt_s=0.2), cp("fast", rtt_s=0.01), cp("unmeasured", rtt_s=None)]) == [
        "fast",
        "slow",
        "unmeasured",
    ]
    assert order([cp("small", memory_mb=1000), cp("big", memory_mb=64000)]) == ["big", "small"]
    assert order([cp("z"), cp("y"), cp("x")]) == ["x", "y", "z"]


def test_filters_say_why() -> None:
    placement = place(
        [
            cp("other-channel", channel="nunet-team"),
            cp("busy", available=False),
            cp("no-docker", executors=("wasm",)),
            cp("little-cpu", cpu_mhz=999),
            cp("few-cores", cores=0),
            cp("little-mem", memory_mb=100),
            cp("pricey", ntx_price=10**9),
        ],
        dataclasses.replace(NEEDS, max_price=10**10),
    )
    assert placement.ranked == ()
    why = dict(placement.rejected)
    assert why["other-channel"] == "on channel nunet-team, not nunet-test"
    assert why["busy"] == "not accepting jobs"
    assert "docker" in why["no-docker"]
    assert why["little-cpu"] == "999 MHz free, 1000 needed"
    assert why["little-mem"] == "100 MB free, 512 needed"
    assert "above max_price" in why["pricey"]
    assert "little-mem: 100 MB free" in placement.explain()


def test_gpu_vendor_and_vram() -> None:
    needs = dataclasses.replace(NEEDS, gpus=1, vram_mb=70000, gpu_vendor="nvidia")
    assert order([cp("amd", gpus=(MI210,)), cp("nv", gpus=(A100,)), cp("none")], needs) == ["nv"]
    needs = dataclasses.replace(NEEDS, gpus=2, vram_mb=1000)
    assert order([cp("one", gpus=(A100,)), cp("two", gpus=(A100, MI210))], needs) == ["two"]


def test_target_peer_restricts_without_noise() -> None:
    placement = place([cp("a"), cp("b")], dataclasses.replace(NEEDS, target_peer="b"))
    assert [r.candidate.peer_id for r in placement.ranked] == ["b"] and placement.rejected == ()


def test_transitions() -> None:
    assert transition(SPState.QUOTED, SPState.AWAITING_PAYMENT) is SPState.AWAITING_PAYMENT
    assert transition(CPState.RUNNING, CPState.COMPLETED) is CPState.COMPLETED
    for bad in [
        (SPState.COMPLETED, SPState.RUNNING),
        (CPState.OFFERED, CPState.RUNNING),
        (SPState.QUOTED, SPState.QUOTED),
    ]:
        with pytest.raises(InvalidTransition):
            transition(*bad)
    assert SPState.FAILED.is_terminal() and not CPState.STARTING.is_terminal()


def test_max_rtt_is_a_hard_filter_that_names_itself() -> None:
    needs = dataclasses.replace(NEEDS, max_rtt_ms=50)
    placement = place([cp("near", rtt_s=0.01), cp("far", rtt_s=0.2), cp("unmeasured", rtt_s=None)], needs)
    assert [r.candidate.peer_id for r in placement.ranked] == ["near"]
    assert dict(placement.rejected) == {
        "far": "RTT 200.0 ms is above max_rtt_ms 50",
        "unmeasured": "no measured RTT (not connected), max_rtt_ms 50",
    }


def test_preferred_rtt_ranks_before_price() -> None:
    cheap_far, dear_near = cp("cheap-far", ntx_price=1, rtt_s=0.2), cp("dear-near", ntx_price=5, rtt_s=0.01)
    assert order([cheap_far, dear_near]) == ["cheap-far", "dear-near"]  # no preference: price first
    prefer = dataclasses.replace(NEEDS, preferred_rtt_ms=50)
    assert order([cheap_far, dear_near, cp("unknown", ntx_price=1, rtt_s=None)], prefer) == [
        "dear-near",
        "cheap-far",
        "unknown",
    ]
