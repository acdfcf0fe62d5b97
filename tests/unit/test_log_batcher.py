"""LogBatcher: a job's output handed on in order, one batch per interval, and nothing for a silent job."""

from __future__ import annotations

import asyncio

from dms.executor.base import LogChunk
from dms.executor.docker_logs import LogBatcher


class Sink:
    def __init__(self) -> None:
        self.chunks: list[LogChunk] = []
        self.arrived = asyncio.Event()

    async def __call__(self, chunk: LogChunk) -> None:
        self.chunks.append(chunk)
        self.arrived.set()


async def test_output_is_handed_on_after_the_interval_in_order() -> None:
    sink = Sink()
    batch = LogBatcher(sink, 0.01)
    batch.add(False, b"one ")
    batch.add(True, b"oops\n")
    batch.add(False, b"two\n", at_ns=7)
    await asyncio.wait_for(sink.arrived.wait(), 5)  # no close: the interval alone hands it on
    assert sink.chunks == [LogChunk("one two\n", "oops\n", 7)]
    sink.arrived.clear()
    batch.add(False, b"three\n")
    await asyncio.wait_for(sink.arrived.wait(), 5)  # a later batch gets its own timer
    await batch.close()
    assert [c.stdout for c in sink.chunks] == ["one two\n", "three\n"]


async def test_a_silent_job_hands_on_nothing() -> None:
    sink = Sink()
    batch = LogBatcher(sink, 0.01)
    await batch.close()
    assert sink.chunks == []


async def test_close_hands_on_the_rest_at_once_with_a_split_character() -> None:
    sink = Sink()
    batch = LogBatcher(sink, 3600)  # the interval never comes: close alone must hand it on
    batch.add(False, "é".encode()[:1])
    batch.add(True, b"err")
    await batch.close()
    assert sink.chunks == [LogChunk("\ufffd", "err", 0)]
