"""Numbered job events that are stored before anyone sees them, then handed to live followers.

Both sides use it: the provider for its events (status, logs, result), the requester for dashboard frames.
A follower gets everything after a sequence number — stored events first, then live ones — each once,
in order: it starts listening before it reads the store, so an event is stored, queued, or both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from dms.store.jobs import EventLog, Side


@dataclass(frozen=True)
class Numbered:
    seq: int
    kind: str
    data: dict[str, Any]


class EventFeed:
    def __init__(self, events: EventLog, side: Side) -> None:
        self._events = events
        self._side = side
        self._queues: defaultdict[str, set[asyncio.Queue[Numbered]]] = defaultdict(set)
        self._last: dict[str, int] = {}

    async def number(self, job_id: str) -> int:
        """The job's next event number. Allocated here, in memory, never reused: numbers are not read
        back from the store per event (`max(seq) + 1` races), only once per job to resume after a restart."""
        if job_id not in self._last:
            last = await self._events.last_seq(self._side, job_id)
            self._last.setdefault(job_id, last)  # a concurrent first call may have set it meanwhile
        self._last[job_id] += 1
        return self._last[job_id]

    def fresh(self, job_id: str) -> None:
        """A job whose row was just created has no events yet (rows are never deleted, so its id is new to
        the store): its numbers start at 1 without reading the store."""
        self._last.setdefault(job_id, 0)

    def forget(self, job_id: str) -> None:
        """Drop the job's counter (its numbers are resumed from the store if it ever emits again)."""
        self._last.pop(job_id, None)

    async def emit(self, job_id: str, kind: str, data: dict[str, Any]) -> Numbered:
        """Store the event under the job's next number, then hand it to the job's followers."""
        item = Numbered(await self.number(job_id), kind, data)
        await self._events.add(self._side, job_id, item.seq, kind, data)
        self.publish(job_id, item)
        return item

    def publish(self, job_id: str, item: Numbered) -> None:
        """Hand an event that is already stored (by whoever numbered it) to the job's live followers."""
        for queue in self._queues.get(job_id, ()):
            queue.put_nowait(item)

    async def follow(
        self, job_id: str, after: int, idle_s: float | None = None
    ) -> AsyncGenerator[Numbered | None, None]:
        """Events numbered above `after`, stored then live; None after each `idle_s` without one.

        Endless: the caller stops when it has seen what it waits for (use contextlib.aclosing).
        """
        async with contextlib.aclosing(self.batches(job_id, after, idle_s)) as batches:
            async for batch in batches:
                if batch is None:
                    yield None
                    continue
                for item in batch:
                    yield item

    async def batches(
        self, job_id: str, after: int, idle_s: float | None = None
    ) -> AsyncGenerator[list[Numbered] | None, None]:
        """`follow`, in batches: everything there is at each step (the stored backlog, then whatever was
        published meanwhile), in order, so a sender can write it at once; None after each idle `idle_s`."""
        queue: asyncio.Queue[Numbered] = asyncio.Queue()
        self._queues[job_id].add(queue)
        try:
            rows = await self._events.after(self._side, job_id, after)
            pending = [Numbered(r.seq, r.kind, r.payload) for r in rows]
            last = after
            while True:
                if not pending:
                    try:
                        pending.append(await asyncio.wait_for(queue.get(), idle_s))
                    except TimeoutError:
                        yield None
                        continue
                while not queue.empty():
                    pending.append(queue.get_nowait())
                batch = []
                for item in pending:
                    if item.seq > last:  # else a stored event also queued live
                        last = item.seq
                        batch.append(item)
                pending = []
                if batch:
                    yield batch
        finally:
            self._queues[job_id].discard(queue)
            if not self._queues[job_id]:
                del self._queues[job_id]
