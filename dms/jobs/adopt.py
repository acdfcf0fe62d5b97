"""Jobs that outlive their provider's process: after a restart the provider adopts the job's container
again (if its engine can) and resumes its output from the engine's own copy, after the last entry it
stored, so nothing is shown twice and what the job wrote meanwhile is not lost."""

from __future__ import annotations

from dms.executor.base import Adopting
from dms.store.jobs import EventLog

__all__ = ["Adopting", "resume_point"]


async def resume_point(events: EventLog, job_id: str) -> int:
    """The engine time of the last output the provider stored for the job (0: from the start)."""
    stored = [e.payload.get("until", 0) for e in await events.after("cp", job_id, 0) if e.kind == "logs"]
    return max((x for x in stored if isinstance(x, int)), default=0)


async def last_checkpoint(events: EventLog, job_id: str) -> tuple[int, str] | None:
    """The number and hash of the last checkpoint the provider reported for the job, where an adopted run's
    checkpoints number on (None: none yet)."""
    stored = [e.payload for e in await events.after("cp", job_id, 0) if e.kind == "checkpoint"]
    last = stored[-1] if stored else None
    if last is None or not isinstance(last.get("seq"), int) or not isinstance(last.get("sha256"), str):
        return None
    return int(last["seq"]), str(last["sha256"])
