"""Races on one job, N trials each (issue 12.1): two payments at once, cancel racing the start, cancel racing
completion, several dashboards on one job. Each trial must end with one run at most, one `job-submitted`,
one terminal frame for every follower, the same end on both sides, and a clear answer for the loser."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from dms.errors import Conflict, InvalidInput
from dms.jobs.protocol import PROTOCOL, Accepted, Deploy, End, Payment, Rejected, decode_to_requester, encode
from tests.integration.jobpair import CP, Pair, job, pair

__all__ = ["pair"]  # the fixture

TRIALS = 4
TERMINAL = ("job-completed", "job-failed")


async def collect(p: Pair, job_id: str) -> list[dict[str, Any]]:
    return [f async for _, f in p.requester.frames(job_id)]


async def ends_agree(p: Pair, job_id: str, frames: list[dict[str, Any]]) -> str:
    """Check one job's story on both sides; its final SP state."""
    actions = [f["action"] for f in frames]
    assert actions.count("job-submitted") <= 1, actions
    assert sum(a in TERMINAL for a in actions) == 1 and actions[-1] in TERMINAL, actions
    sp = await p.requester.get(job_id)
    cp = await p.provider.job(job_id)
    if cp is not None:  # the provider ran it (once: a second dispatch is refused as "already known")
        assert cp.state == sp.state, (cp.state, sp.state, sp.reason)
    assert (frames[-1]["action"] == "job-completed") == (sp.state == "completed")
    if sp.state == "cancelled":
        assert "ran to the end" not in "".join(
            f.get("stdout", "") for f in frames if f["action"] == "log-stream-response"
        )
    assert "already known" not in (sp.reason or "")
    return sp.state


async def test_two_payments_at_once_run_the_job_once(pair: Pair) -> None:
    for _ in range(TRIALS):
        quote = await pair.requester.request_service(job("echo ran to the end"), None)
        job_id = quote["job_id"]
        watchers = [asyncio.create_task(collect(pair, job_id)) for _ in range(2)]
        answers = await asyncio.gather(
            pair.requester.send_status(job_id, "success", None),
            pair.requester.send_status(job_id, "success", None),
            return_exceptions=True,
        )
        assert answers.count(None) == 1, answers  # the first wins...
        loser = next(a for a in answers if a is not None)
        assert isinstance(loser, Conflict) and loser.code == "wrong_state"  # ...the second is told why
        assert "payment is already being checked" in loser.message or "not awaiting payment" in loser.message
        first, second = await asyncio.gather(*watchers)
        assert first == second  # two dashboards, the same story, each with its one terminal frame
        assert await ends_agree(pair, job_id, first) == "completed"
        assert len(pair.wire.opened) == 1  # dispatched once
        pair.wire.opened.clear()


async def test_cancel_racing_the_start(pair: Pair) -> None:
    """Cancel at every point of the start: with the payment, at job-submitted, at deployment-response."""
    for point in ("with-payment", "job-submitted", "deployment-response") * (TRIALS // 2):
        quote = await pair.requester.request_service(job("sleep 2; echo ran to the end"), None)
        job_id = quote["job_id"]
        watcher = asyncio.create_task(collect(pair, job_id))
        if point == "with-payment":
            paid, cancelled = await asyncio.gather(
                pair.requester.send_status(job_id, "success", None), pair.requester.cancel(job_id),
                return_exceptions=True,
            )  # fmt: skip
            assert paid is None and cancelled is None, (paid, cancelled)
        else:
            await pair.requester.send_status(job_id, "success", None)
            async for _, f in pair.requester.frames(job_id):
                if f["action"] == point:
                    break
            with contextlib.suppress(Conflict):  # the job may have failed already (never: it sleeps 2 s)
                await pair.requester.cancel(job_id)
        frames = await watcher
        assert await ends_agree(pair, job_id, frames) == "cancelled", point
        assert frames[-1]["message"] == "cancelled"


async def test_cancel_racing_completion(pair: Pair) -> None:
    """A cancel sent as the job finishes: either it wins (cancelled everywhere) or it is told the job ended."""
    outcomes = set()
    for i in range(TRIALS):
        quote = await pair.requester.request_service(job(f"echo up; sleep 0.{i}; echo ran to the end"), None)
        job_id = quote["job_id"]
        await pair.requester.send_status(job_id, "success", None)
        async for _, f in pair.requester.frames(job_id):
            if f["action"] == "log-stream-response":
                break
        try:
            await pair.requester.cancel(job_id)
        except Conflict as exc:
            assert exc.code == "wrong_state" and "already ended" in exc.message
        frames = await collect(pair, job_id)
        outcomes.add(await ends_agree(pair, job_id, frames))
    assert outcomes <= {"completed", "cancelled"}
    try:  # the job has ended: a cancel now is refused, saying so
        await pair.requester.cancel(job_id)
        raise AssertionError("a cancel after the end was accepted")
    except Conflict as exc:
        assert "already ended" in exc.message


async def test_many_commands_at_once_keep_numbers_unique(pair: Pair) -> None:
    """20 concurrent commands on one job: no store error, frames numbered 1..n without repeats."""
    quote = await pair.requester.request_service(job("for i in 1 2 3; do echo $i; done"), None)
    job_id = quote["job_id"]
    answers = await asyncio.gather(
        *(pair.requester.send_status(job_id, "success", None) for _ in range(10)),
        *(pair.requester.send_status(job_id, "pending", None) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(a is None or isinstance(a, Conflict) for a in answers), answers
    seqs = [s async for s, _ in pair.requester.frames(job_id)]
    assert seqs == sorted(set(seqs))
    frames = await collect(pair, job_id)
    assert await ends_agree(pair, job_id, frames) == "completed"


async def test_a_resize_racing_an_admission_never_overcommits(pair: Pair) -> None:
    """12.4: admission (check and hold) and a reservation change take the one ledger lock: whichever goes
    second sees the other, so what jobs hold never exceeds the reservation."""
    reserved = (await pair.onboarding.require()).reserved
    spec = job("true", resources={"cpu_mhz": reserved.cpu_mhz})  # all of it
    smaller = reserved.cpu_mhz - 100  # a valid reservation, too small for the job
    outcomes = set()
    for i in range(TRIALS * 2):
        job_id = f"ledger-race-{i}"
        stream = await pair.wire.open(CP, PROTOCOL)
        deploy = Deploy(type="deploy", job_id=job_id, spec=spec, payment=Payment(price=0))
        _, resized = await asyncio.gather(
            stream.send(encode(deploy)),
            pair.onboarding.resource_config(cpu_mhz=smaller, memory_mb=None, gpus=None),
            return_exceptions=True,
        )
        answer = decode_to_requester(await stream.receive(10))
        assert isinstance(answer, Accepted | Rejected)
        if isinstance(answer, Accepted):  # the resize, second, was refused: below what jobs hold
            assert isinstance(resized, InvalidInput) and "held" in resized.message, resized
            outcomes.add("admitted")
            while not isinstance(decode_to_requester(await stream.receive(30)), End):
                pass  # the job's events, through its end
        else:  # the resize went first: the job did not fit any more
            assert resized is not None and not isinstance(resized, BaseException), resized
            assert "not enough free CPU" in answer.reason, answer.reason
            outcomes.add("refused")
        await stream.close()
        await pair.onboarding.resource_config(cpu_mhz=reserved.cpu_mhz, memory_mb=None, gpus=None)
        assert await pair.onboarding.free() == reserved  # released, never below zero meanwhile
