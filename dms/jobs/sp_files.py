"""A service-provider job's files (dms.artifacts), as its owner task (`sp_job.py`) sees them.

The hooks keep their own records (outputs and checkpoints per job), never the job's row: the owner task
stays the only writer of that. A provider's result that reports outputs is held back until a helper has
fetched them (`fetch_outputs`), which then hands the owner an `OutputsFetched` message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dms.jobs.protocol import Event

log = logging.getLogger(__name__)

OutputsHook = Callable[[str, str, Any], Awaitable[dict[str, Any] | None]]
"""(job id, provider's peer id, the outputs it reported) -> what the job's end frame shows (dms.artifacts)."""
CheckpointHook = Callable[[str, str, dict[str, Any]], None]
"""(job id, provider's peer id, the checkpoint event's data): fetched in the background (dms.artifacts)."""


@dataclass(frozen=True)
class FileHooks:
    """The SP's side of a job's files (dms.artifacts): they keep their own records, never the job's row."""

    on_outputs: OutputsHook
    on_checkpoint: CheckpointHook
    latest_checkpoint: Callable[[str], tuple[int, str] | None]
    """job id -> its newest checkpoint held here (number, sha256): where a resumed run starts."""


@dataclass(frozen=True)
class OutputsFetched:
    """The provider's result, once the outputs it reported have been fetched (or failed to be)."""

    result: Event
    outputs: dict[str, Any] | None


async def fetch_outputs(
    files: FileHooks, job_id: str, peer: str, result: Event, submit: Callable[[object], None]
) -> None:
    """Fetch the outputs `result` reports from `peer`; submit `OutputsFetched` (outputs None if it failed)."""
    try:
        outputs = await files.on_outputs(job_id, peer, result.data["outputs"])
    except Exception:  # the job's end is stored regardless; its outputs are then missing
        log.exception("job %s: outputs not received", job_id)
        outputs = None
    submit(OutputsFetched(result, outputs))
