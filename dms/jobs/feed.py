"""Numbered job events that are stored before anyone sees them, then handed to live followers.

Both sides use it: the provider for its events (status, logs, result), the requester for dashboard frames.
A follower gets everything after a sequence number — stored events first, then live ones — each once,
in order: it starts listening before it reads the store, so an event is stored, queued, or both.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
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

    async def emit(self, job_id: str, kind: str, data: dict[str, Any]) -> Numbered:
        """Store the event (it gets the job's next number), then hand it to the job's followers."""
        item = Numbered(await self._events.append(self._side, job_id, kind, data), kind, data)
        for queue in self._queues.get(job_id, ()):
            queue.put_nowait(item)
        return item

    async def follow(
        self, job_id: str, after: int, idle_s: float | None = None
    ) -> AsyncGenerator[Numbered | None, None]:
        """Events numbered above `after`, stored then live; None after each `idle_s` without one.

        Endless: the caller stops when it has seen what it waits for (use contextlib.aclosing).
        """
        queue: asyncio.Queue[Numbered] = asyncio.Queue()
        self._queues[job_id].add(queue)
        try:
            rows = await self._events.after(self._side, job_id, after)
            stored = deque(Numbered(r.seq, r.kind, r.payload) for r in rows)
            last = after
            while True:
                if stored:
                    item = stored.popleft()
                else:
                    try:
                        item = await asyncio.wait_for(queue.get(), idle_s)
                    except TimeoutError:
                        yield None
                        continue
                if item.seq <= last:
                    continue  # a stored event also queued live
                last = item.seq
                yield item
        finally:
            self._queues[job_id].discard(queue)
            if not self._queues[job_id]:
                del self._queues[job_id]
