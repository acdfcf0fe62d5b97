"""The deployment stream opened ahead (docs/job-path-speed.md): without escrow the SP opens the stream to the
quoted provider at the quote, the offer goes on it, and one left unpaid is closed once stale."""

from __future__ import annotations

import time

import pytest

from dms.jobs import sp_job
from dms.jobs.transport import StreamClosed
from tests.integration.jobpair import Pair, job, pair
from tests.procs import eventually

__all__ = ["pair"]  # the fixture


async def test_the_stream_opened_at_the_quote_carries_the_offer(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("true"), None)
    await eventually(lambda: len(pair.wire.opened) == 1, 5, "a stream opened before any payment")
    await pair.requester.send_status(quote["job_id"], "success", None)
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert [f["action"] for f in frames][-1] == "job-completed"
    assert len(pair.wire.opened) == 1  # the offer went on it: no second dial


async def test_a_stream_opened_at_the_quote_is_closed_once_stale(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sp_job, "OPENED_FRESH_S", 0.3)
    quote = await pair.requester.request_service(job("true"), None)
    await eventually(lambda: len(pair.wire.opened) == 1, 5, "a stream opened at the quote")
    t0 = time.monotonic()
    with pytest.raises(StreamClosed):  # the SP closes it while it waits for the payment
        await pair.wire.opened[0].receive(5)
    assert time.monotonic() - t0 < 2
    await pair.requester.send_status(quote["job_id"], "success", None)
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert [f["action"] for f in frames][-1] == "job-completed"
    assert len(pair.wire.opened) == 2  # paid after it went stale: a fresh stream carried the offer


async def test_a_stream_that_could_not_be_opened_at_the_quote_is_dialled_again(pair: Pair) -> None:
    pair.wire.up = False
    quote = await pair.requester.request_service(job("true"), None)
    await eventually(lambda: pair.wire.dials == 1, 5, "the dial at the quote (it failed)")
    pair.wire.up = True
    await pair.requester.send_status(quote["job_id"], "success", None)
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert [f["action"] for f in frames][-1] == "job-completed"
    assert pair.wire.dials == 2 and len(pair.wire.opened) == 1
