"""Which kinds of job this node can run, asked again while one of them cannot.

The provider asks its executors once at start. A Docker engine that is still starting (a machine
booting) or slow to answer (a heavily loaded machine: the check gives up after a few seconds) would
then keep the node from offering container jobs until the daemon restarts. While any kind has a
problem, `ExecutorWatch.run` asks again every `RECHECK_S` and calls `changed` when the answer changes,
so the node re-advertises; once every kind works it asks only every `HEALTHY_RECHECK_S` (an engine
stopped later is noticed too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dms.executor.base import Executor

log = logging.getLogger(__name__)

RECHECK_S = 10.0
HEALTHY_RECHECK_S = 60.0


class ExecutorWatch:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self.problems: dict[str, str | None] = {}
        """Each kind of executor and its problem (None when it works)."""

    @property
    def working(self) -> tuple[str, ...]:
        return tuple(k for k, problem in self.problems.items() if problem is None)

    @property
    def problem(self) -> str | None:
        """None when some executor works; else why none does."""
        if self.working:
            return None
        return "; ".join(p for p in self.problems.values() if p is not None) or "no executor"

    async def check(self) -> bool:
        """Ask the executors; True when the answer changed."""
        before, self.problems = self.problems, await self._executor.kinds()
        return self.problems != before

    async def run(self, changed: Callable[[], None]) -> None:
        """Ask again for ever (cancel to stop); `changed()` after each change. Never raises otherwise."""
        while True:
            healthy = all(p is None for p in self.problems.values())
            await asyncio.sleep(HEALTHY_RECHECK_S if healthy else RECHECK_S)
            try:
                if not await self.check():
                    continue
            except Exception:
                log.exception("checking the executors failed")
                continue
            log.info("executors now: %s", ", ".join(f"{k} {p or 'works'}" for k, p in self.problems.items()))
            changed()
