"""One run of a job on its provider, as far as files go: the provider's single hook into dms.artifacts.

files = RunFiles(job_files, job_id, ask, sp_peer, emit_checkpoint, stop_job)
mounts, seed, dump = await files.prepare()  # inputs laid out, a checkpoint restored (InputFailed)
... files.started() once the container runs (disk watch, periodic checkpoints) ...
outputs, failure = await files.finish()   # last checkpoint, outputs collected
await files.close()                # always: tasks stopped, pins dropped, the job's folder removed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from dms.artifacts.checkpoints import CheckpointRun, Emit
from dms.artifacts.inputs import is_hash
from dms.artifacts.staging import InputRef, JobFiles, OutputsTooLarge
from dms.artifacts.store import Artifact
from dms.errors import DmsError
from dms.executor.base import ExecutorError, Mount

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilesAsk:
    """What a job's spec asks of its files (dms.jobs.spec: inputs, checkpoint, restore)."""

    inputs: tuple[InputRef, ...] = ()
    checkpoint_path: str | None = None
    checkpoint_interval_s: float = 0.0
    restore: str | None = None


class RunFiles:
    def __init__(
        self,
        files: JobFiles,
        job_id: str,
        ask: FilesAsk,
        sp_peer: str,
        emit_checkpoint: Emit,
        stop_job: Callable[[], Awaitable[None]],
        dump_disk: Callable[[Path], Awaitable[None]],
    ) -> None:
        self._files = files
        self._job_id = job_id
        self._ask = ask
        self._sp_peer = sp_peer
        self._stop_job = stop_job
        self._watch: asyncio.Task[None] | None = None
        self._over = False
        self._checkpoints: CheckpointRun | None = None
        if ask.checkpoint_path is not None:

            async def snapshot(final: bool) -> Artifact | None:
                # a final one reads what the executor copied off the ended job's disk (workspace_dump)
                try:
                    return await files.snapshot(job_id, None if final else dump_disk)
                except ExecutorError as exc:  # the job just ended: its final checkpoint follows
                    log.info("job %s: no checkpoint now: %s", job_id, exc)
                    return None

            self._checkpoints = CheckpointRun(snapshot, ask.checkpoint_interval_s, emit_checkpoint)

    async def prepare(self) -> tuple[tuple[Mount, ...], Path | None, Path | None]:
        """The run's mounts (`/inputs` read-only when it has inputs, `/outputs`); the folder its disk
        (`/workspace`) starts from (a restored checkpoint), and the folder its disk is copied into once it
        ended (its last checkpoint), when it takes checkpoints. Raises InputFailed saying which and why."""
        f, job_id, ask = self._files, self._job_id, self._ask
        mounts: list[Mount] = []
        if ask.inputs:
            folder = await f.prepare_inputs(job_id, ask.inputs, self._sp_peer)
            mounts.append(Mount(str(folder), "/inputs", read_only=True))
        mounts.append(Mount(str(f.prepare_outputs(job_id)), "/outputs", read_only=False))
        seed = dump = None
        if ask.checkpoint_path is not None:
            if ask.restore is not None:
                log.info("job %s: restoring checkpoint %s from %s", job_id, ask.restore, self._sp_peer)
                f.prepare_checkpoint(job_id)
                await f.restore(job_id, ask.restore, self._sp_peer)  # into the checkpoint folder
                seed = f.folder(job_id) / "restore"
                await asyncio.to_thread((f.folder(job_id) / "checkpoint").rename, seed)
            dump = f.prepare_checkpoint(job_id, "final")
        return tuple(mounts), seed, dump

    def adopt(self, last_checkpoint: tuple[int, str] | None) -> Path | None:
        """The same run, adopted after the provider restarted (its container still runs with the folders
        `prepare` made, kept by the start-up clean-up): its blobs pinned again, checkpoints numbered on from
        `last_checkpoint` (seq, sha256); the folder its disk is copied into once it ended, as `prepare`'s."""
        f, job_id, ask = self._files, self._job_id, self._ask
        f.pin(job_id, {i.source for i in ask.inputs if is_hash(i.source)} | ({ask.restore} if ask.restore else set()))
        if self._checkpoints is None:
            return None
        if last_checkpoint is not None:
            self._checkpoints.continue_from(*last_checkpoint)
        return f.prepare_checkpoint(job_id, "final")

    def started(self) -> None:
        """The container runs: watch its files' size, take checkpoints."""

        async def over() -> None:
            self._over = True
            await self._stop_job()

        self._watch = asyncio.create_task(self._files.watch_outputs(self._job_id, over))
        if self._checkpoints is not None:
            self._checkpoints.start()

    async def finish(self) -> tuple[Artifact | None, str | None]:
        """The container has ended: the last checkpoint, then the outputs. (outputs, why the run failed
        because of its files, if it did)."""
        await self._stop_watch()
        if self._over:
            where = "/outputs" + (f" and {self._ask.checkpoint_path}" if self._ask.checkpoint_path else "")
            return None, f"stopped: what it wrote in {where} passed the limit of {self._files.outputs_max} bytes"
        try:
            if self._checkpoints is not None:
                await self._checkpoints.finish()
            return await self._files.collect_outputs(self._job_id), None
        except OutputsTooLarge as exc:
            return None, str(exc)
        except (DmsError, OSError) as exc:  # a full store: the run itself did what it did
            return None, f"its files could not be kept: {exc}"

    async def close(self) -> None:
        await self._stop_watch()
        if self._checkpoints is not None:
            await self._checkpoints.stop()
        await asyncio.to_thread(self._files.release, self._job_id)

    async def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
