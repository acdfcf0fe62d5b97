"""Pieces of the job path's speed work: messages joined into few writes, and work coalesced off the path."""

from __future__ import annotations

import asyncio

from dms.jobs.protocol import joined
from dms.jobs.tasks import Coalesced


def test_lines_are_joined_into_few_writes_within_the_limit() -> None:
    lines = [b"a" * 4 + b"\n", b"b" * 4 + b"\n", b"c" * 9 + b"\n", b"d\n"]
    assert joined(lines, 10) == [b"aaaa\nbbbb\n", b"ccccccccc\n", b"d\n"]
    assert joined(lines, 1000) == [b"".join(lines)]
    assert joined([b"x" * 20 + b"\n"], 10) == [b"x" * 20 + b"\n"]  # a longer line goes alone, whole
    assert joined([], 10) == []
    for limit in (1, 5, 11, 12, 30):
        assert b"".join(joined(lines, limit)) == b"".join(lines)  # nothing lost or reordered


async def test_asks_while_the_work_runs_make_it_run_once_more() -> None:
    runs: list[int] = []
    gate, started = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        runs.append(len(runs))
        started.set()
        await gate.wait()

    again = Coalesced(work)
    again()  # starts the first run, which waits at the gate
    await started.wait()
    assert runs == [0]
    for _ in range(5):  # five asks while it runs: one more run, not five
        again()
    gate.set()
    await again.idle()
    assert runs == [0, 1]
    again()
    await again.idle()
    assert runs == [0, 1, 2]
    await again.close()


async def test_a_failing_run_is_logged_and_later_asks_still_run() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the first run fails")

    again = Coalesced(work)
    again()
    await again.idle()
    again()
    await again.idle()
    assert calls == 2
    await again.close()


async def test_runs_keep_their_minimum_gap_and_asks_meanwhile_make_one_run() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    first = asyncio.Event()

    async def work() -> None:
        starts.append(loop.time())
        first.set()

    again = Coalesced(work, min_gap_s=0.2)
    again()
    await first.wait()
    for _ in range(5):  # asked during the gap: one more run, once the gap has passed
        again()
    await again.idle()
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.2
    await again.close()
