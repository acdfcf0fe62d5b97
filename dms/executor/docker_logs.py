"""A container's output on its way to the job's log sink: read live from an attach made before the start
(every byte exactly once), or from the engine's own copy after a restart (from a timestamp on), and handed
on in batches (`LogBatcher`, also used by the wasm executor).
"""

from __future__ import annotations

import asyncio
import codecs
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiodocker
from aiodocker.stream import Stream
from yarl import URL

from dms.executor.base import LogChunk, LogSink

STDOUT, STDERR = 1, 2


def split_timestamp(entry: bytes) -> tuple[int, bytes]:
    """(ns since the epoch, the output) of one log entry read with `timestamps=1` (RFC 3339, nanoseconds,
    then a space); (0, entry) when it has no timestamp."""
    head, sep, rest = entry.partition(b" ")
    if not sep or not head.endswith(b"Z") or b"T" not in head:
        return 0, entry
    try:
        seconds, _, fraction = head[:-1].decode().partition(".")
        whole = int(datetime.fromisoformat(seconds).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0, entry
    return whole * 10**9 + int((fraction + "000000000")[:9] or 0), rest


LogEntry = tuple[bool, bytes, int]
"""(from stderr, the bytes, ns since the epoch or 0) of one piece of a job's output."""

MAX_BATCH = 256 * 1024
"""Bytes of output a batch holds at most before it is handed on."""


class LogBatcher:
    """Collects stdout/stderr bytes and hands them on in order, `interval` seconds after the first bytes of
    a batch arrived. A job that prints nothing costs nothing: no timer runs until it does."""

    def __init__(self, sink: LogSink, interval: float) -> None:
        self._sink = sink
        self._interval = interval
        self._decoders = (
            codecs.getincrementaldecoder("utf-8")("replace"),
            codecs.getincrementaldecoder("utf-8")("replace"),
        )
        self._parts: tuple[list[str], list[str]] = ([], [])
        self._size = 0
        self._until = 0
        self._lock = asyncio.Lock()
        self._due: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    def add(self, is_stderr: bool, data: bytes, at_ns: int = 0) -> None:
        self._parts[is_stderr].append(self._decoders[is_stderr].decode(data))
        self._size += len(data)
        self._until = max(self._until, at_ns)
        if self._due is None:
            self._due = asyncio.get_running_loop().call_later(self._interval, self._flush_due)

    def _flush_due(self) -> None:
        # A task of its own, not the reader's: stopping the reader must not cut a batch off half-way through
        # its sink (it was taken out of the buffer already, so it would be lost); `close` waits for it.
        self._due = None
        task = asyncio.create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    @property
    def full(self) -> bool:
        """Past MAX_BATCH bytes: the reader hands the batch on before it reads more (bounded memory)."""
        return self._size >= MAX_BATCH

    async def flush(self, final: bool = False) -> None:
        async with self._lock:
            if final:
                for i in (0, 1):
                    self._parts[i].append(self._decoders[i].decode(b"", final=True))
            out, err = ("".join(p) for p in self._parts)
            for p in self._parts:
                p.clear()
            self._size = 0
            if out or err:
                await self._sink(LogChunk(out, err, self._until))

    async def close(self) -> None:
        """Hand on what is left (after any batch on its way), the last bytes of a split character too."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        await self.flush(final=True)  # after a batch being handed on: the lock keeps them in order
        for task in list(self._flushing):  # due just before: finds nothing left, and ends
            await task


async def pump_logs(entries: AsyncIterator[LogEntry], on_logs: LogSink, interval: float) -> None:
    """Hand the job's output on in batches (at most every `interval` seconds) until the container stops."""
    batch = LogBatcher(on_logs, interval)
    try:
        async for is_stderr, data, at_ns in entries:
            batch.add(is_stderr, data, at_ns)
            if batch.full:  # a flood: wait for the sink rather than buffer without bound
                await batch.flush()
    finally:
        await batch.close()


def attach(docker: aiodocker.Docker, container_id: str) -> Stream:
    """The container's stdout and stderr, attached (before its start, so that nothing is missed).

    aiodocker's own `DockerContainer.attach` first inspects the container to learn whether it has a TTY:
    one more engine call per job. Ours never have one (`container_config`), so the stream is set up
    without asking."""

    async def setup() -> tuple[URL, bytes | None, bool]:
        query = {"detachKeys": "", "logs": "0", "stdin": "0", "stdout": "1", "stderr": "1", "stream": "1"}
        return URL(f"containers/{container_id}/attach").with_query(query), None, False

    return Stream(docker, setup)  # the client's own connect timeouts; none on reading a running job


async def attached_output(stream: Stream) -> AsyncIterator[LogEntry]:
    """The live output of a container attached before its start: every byte exactly once. (The engine's
    own log copy is bounded by rotation, and a follower of it loses or repeats entries when a flood
    rotates the file under it.) Entries are stamped with their arrival time, for `follow` after a restart."""
    while (msg := await stream.read_out()) is not None:
        yield msg.stream == STDERR, msg.data, time.time_ns()


async def engine_output(
    docker: aiodocker.Docker, container: aiodocker.docker.DockerContainer, after_ns: int
) -> AsyncIterator[LogEntry]:
    """The engine's copy of an adopted container's output, from the entry after `after_ns` on."""
    params = {"stdout": "1", "stderr": "1", "follow": "1", "timestamps": "1"}
    if after_ns:
        params["since"] = str(after_ns // 10**9)  # whole seconds: the entries up to after_ns are skipped below
    async with docker._query(f"containers/{container.id}/logs", params=params, timeout=None) as resp:
        while True:
            try:
                kind, length = struct.unpack(">BxxxL", await resp.content.readexactly(8))
                data = await resp.content.readexactly(length)
            except asyncio.IncompleteReadError:
                return
            at_ns, data = split_timestamp(data)
            if not at_ns or at_ns > after_ns:
                yield kind == STDERR, data, at_ns
