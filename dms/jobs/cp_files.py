"""A job's files on its provider: the one `RunFiles` (dms.artifacts) of a run, for a fresh run and for one
adopted after the provider restarted alike (inputs, outputs collected at the end, checkpoints)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dms.artifacts.jobrun import FilesAsk, RunFiles
from dms.artifacts.staging import InputFailed, InputRef, JobFiles
from dms.artifacts.store import Artifact
from dms.errors import DmsError
from dms.executor.base import Executor, ExecutorError, HasWorkspace
from dms.jobs.spec import JobSpec

log = logging.getLogger(__name__)

Emit = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""(job id, event kind, data): store and send one of the job's events."""


def run_files(
    files: JobFiles | None, executor: Executor, job_id: str, spec: JobSpec, sp_peer: str, emit: Emit
) -> RunFiles | None:
    """The run's inputs, outputs and checkpoints; None on a provider without them (InputFailed when the job
    needs them) and for a wasm job (no /inputs, /outputs or disk to snapshot)."""
    if files is None:
        if spec.inputs or spec.restore:
            raise InputFailed("this provider does not take job inputs")
        return None
    if spec.executor != "docker":
        return None
    ck = spec.checkpoint
    ask = FilesAsk(
        tuple(InputRef(i.source, i.path) for i in spec.inputs), ck.path if ck else None,
        ck.interval_s if ck else 0.0, spec.restore,
    )  # fmt: skip

    async def checkpoint(data: dict[str, Any]) -> None:
        await emit(job_id, "checkpoint", data)

    async def dump(dest: Path) -> None:
        if not isinstance(executor, HasWorkspace):
            raise ExecutorError("this provider's executor cannot copy a job's disk")
        await executor.dump_workspace(job_id, dest)

    stop = functools.partial(executor.cancel, job_id)
    return RunFiles(files, job_id, ask, sp_peer, checkpoint, stop, dump)


async def outputs_left(files: JobFiles | None, job_id: str) -> Artifact | None:
    """The /outputs a job left when it ended while its provider was down (found at the restart), as a fresh
    run's are collected; None when there are none or they cannot be kept (logged)."""
    if files is None:
        return None
    try:
        return await files.collect_outputs(job_id)
    except (DmsError, OSError) as exc:
        log.warning("job %s: the outputs it left while the provider was down are not kept: %s", job_id, exc)
        return None
