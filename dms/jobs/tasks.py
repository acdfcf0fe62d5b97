"""Background tasks of the job services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then wait for each to finish its cleanup."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Coalesced:
    """Runs `work` in the background each time it is asked (`__call__` returns at once), never two at a
    time: asks that come while it runs make it run once more afterwards, however many they were. For work
    off a job's critical path whose latest run is all that matters (re-advertising free capacity after an
    admission or a release: a burst of them makes a few adverts, not one each). A run starts no sooner than
    `min_gap_s` after the one before (asks meanwhile still make one run). `work` is expected not to raise;
    if it does, the error is logged and later asks run it again."""

    def __init__(self, work: Callable[[], Awaitable[None]], min_gap_s: float = 0.0) -> None:
        self._work = work
        self._min_gap_s = min_gap_s
        self._last = -math.inf
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._again:
            await asyncio.sleep(max(0.0, self._last + self._min_gap_s - loop.time()))
            self._again = False
            self._last = loop.time()
            try:
                await self._work()
            except Exception:
                log.exception("background work failed")

    async def idle(self) -> None:
        """Wait until no run is due (what was asked so far has run)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
