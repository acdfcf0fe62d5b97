"""Requester and provider services end to end over an in-process line stream, with the real Docker engine
and real SQLite stores. (The same services over real libp2p daemons are in tests/e2e.)"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from dms.errors import InvalidInput
from dms.jobs.protocol import PROTOCOL, Accepted, Attach, End, Event, decode_to_requester, encode
from dms.jobs.spec import JobSpec
from tests.integration.jobpair import CP, Pair, job, pair, run_to_end

__all__ = ["pair"]  # the fixture


async def test_happy_path_frames_in_order(pair: Pair) -> None:
    job_id, frames = await run_to_end(pair, job("echo hello from the job"))
    actions = [f["action"] for f in frames]
    assert actions[0] == "job-submitted" and actions[1] == "deployment-response" and actions[-1] == "job-completed"
    assert frames[1]["message"]["success"] is True
    assert "hello from the job" in "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    assert frames[-1]["detail"] == {"exit_code": 0}
    assert (await pair.requester.get(job_id)).state == "completed"
    assert await pair.onboarding.free() == (await pair.onboarding.require()).reserved  # resources released


async def test_exit_code_fails_the_job(pair: Pair) -> None:
    _, frames = await run_to_end(pair, job("echo bye; exit 1"))
    assert frames[-1]["action"] == "job-failed"
    assert frames[-1]["message"] == "exited with code 1" and frames[-1]["detail"]["exit_code"] == 1


async def test_refusal_is_reported(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("true"), None)
    await pair.onboarding.set_available(False)
    await pair.requester.send_status(quote["job_id"], "success", None)
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert frames[-2]["action"] == "deployment-response" and frames[-2]["message"]["success"] is False
    assert "not accepting jobs" in frames[-1]["message"]


async def test_cancel_while_running(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("echo up; sleep 60"), None)
    await pair.requester.send_status(quote["job_id"], "success", None)
    async for _, f in pair.requester.frames(quote["job_id"]):
        if f["action"] == "log-stream-response":
            break
    await pair.requester.cancel(quote["job_id"])
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert frames[-1]["action"] == "job-failed" and frames[-1]["message"] == "cancelled"
    assert (await pair.requester.get(quote["job_id"])).state == "cancelled"


async def test_subscribe_again_replays_everything_once(pair: Pair) -> None:
    job_id, frames = await run_to_end(pair, job("echo a; sleep 0.2; echo b"))
    again = [f async for _, f in pair.requester.frames(job_id)]
    assert again == frames
    seqs = [s async for s, _ in pair.requester.frames(job_id, after=2)]
    assert seqs[0] == 3


async def test_provider_silence_fails_the_job_within_three_heartbeats(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("echo up; sleep 60"), None)
    await pair.requester.send_status(quote["job_id"], "success", None)
    async for _, f in pair.requester.frames(quote["job_id"]):
        if f["action"] == "log-stream-response":
            break
    pair.wire.up = False  # the provider disappears: no new streams...
    await pair.wire.opened[-1].close()  # ...and the current one drops
    t0 = asyncio.get_running_loop().time()
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert frames[-1]["action"] == "job-failed" and "compute provider lost" in frames[-1]["message"]
    assert asyncio.get_running_loop().time() - t0 < 3 * 0.5 + 1


async def test_next_candidate_after_an_unreachable_or_refusing_one(pair: Pair) -> None:
    cp = pair.requester._candidates()[0]
    ghost = dataclasses.replace(cp, peer_id="ghost-peer", ntx_price=1)  # cheapest: tried first, never answers
    pair.requester._candidates = lambda: [ghost, cp]
    job_id, frames = await run_to_end(pair, job("echo fine"))
    assert frames[1]["message"]["success"] is True and "deployed to cp-peer" in frames[1]["message"]["content"]
    assert frames[-1]["action"] == "job-completed"
    assert (await pair.requester.get(job_id)).cp_peer_id == CP


async def test_provider_log_buffer_is_bounded_with_a_marker(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    import dms.jobs.provider as provider_module

    monkeypatch.setattr(provider_module, "LOG_KEEP", 3)
    monkeypatch.setattr(provider_module, "LOG_TRIM_STEP", 2)
    job_id, frames = await run_to_end(pair, job("for i in $(seq 12); do echo line$i; sleep 0.15; done"))
    shown = "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    assert shown == "".join(f"line{i}\n" for i in range(1, 13))  # the live stream lost nothing
    kept = [e for e in await pair.provider._events.after("cp", job_id, 0) if e.kind == "logs"]
    assert len(kept) <= 3 + 2
    markers = [e for e in kept if "older log batches were dropped" in e.payload["stderr"]]
    assert markers and "line12" in "".join(e.payload["stdout"] for e in kept)


async def test_attach_to_an_ended_job_replays_its_result(pair: Pair) -> None:
    job_id, _ = await run_to_end(pair, job("echo done"))
    stream = await pair.wire.open(CP, PROTOCOL)
    await stream.send(encode(Attach(type="attach", job_id=job_id, after_seq=1)))
    got = []
    while not isinstance(msg := decode_to_requester(await stream.receive(10)), End):
        got.append(msg)
    assert isinstance(got[0], Accepted)
    events = [m for m in got if isinstance(m, Event)]
    assert events[0].seq == 2 and [e.seq for e in events] == list(range(2, 2 + len(events)))
    assert events[-1].kind == "result" and events[-1].data == {"state": "completed", "exit_code": 0, "reason": None}


async def test_a_job_too_large_for_the_wire_is_refused_at_request_service(pair: Pair) -> None:
    """12.5: what request-service accepts, the provider can read; what it cannot is refused up front."""
    for big in (
        job("true", env={f"K{i}": "v" * 32_000 for i in range(20)}),  # a large env
        JobSpec.model_validate({**job("true").model_dump(), "command": ["x" * 4096] * 256}),  # 256 x 4 KB args
    ):
        with pytest.raises(InvalidInput) as caught:
            await pair.requester.request_service(big, None)
        assert caught.value.code == "too_large" and "over the 262144 byte limit" in caught.value.message
    assert await pair.requester.list() == []  # nothing was quoted
    near = job("echo ${#K0}", env={f"K{i}": "v" * 30_000 for i in range(8)})  # about 240 KB: it fits
    _, frames = await run_to_end(pair, near)
    assert frames[-1]["action"] == "job-completed", frames[-1]
    assert "30000" in "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
