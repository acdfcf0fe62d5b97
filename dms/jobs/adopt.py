"""Jobs that outlive their provider's process: after a restart the provider adopts the job's container
again (if its engine can) and resumes its output from the engine's own copy, after the last entry it
stored, so nothing is shown twice and what the job wrote meanwhile is not lost."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from dms.executor.base import LogSink, RunResult
from dms.store.jobs import EventLog


@runtime_checkable
class Adopting(Protocol):
    async def adopt(self, job_id: str) -> bool:
        """Whether the job's container still runs here; if so it is the executor's again (not reconciled)."""

    async def follow(self, job_id: str, after_ns: int, on_logs: LogSink, timeout_s: float | None) -> RunResult:
        """Its output after engine time `after_ns`, then its result, as `Executor.run` gives them."""


async def resume_point(events: EventLog, job_id: str) -> int:
    """The engine time of the last output the provider stored for the job (0: from the start)."""
    stored = [e.payload.get("until", 0) for e in await events.after("cp", job_id, 0) if e.kind == "logs"]
    return max((x for x in stored if isinstance(x, int)), default=0)
