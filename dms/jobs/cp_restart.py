"""The provider's restart (mixed into `provider.ProviderService`): jobs that were live when the daemon last
stopped are adopted when their container still runs (followed to their end from where their stored output
stops, and stopped if their requester does not re-attach), or reconciled (ended as their container ended, or
failed) otherwise. These methods run at start-up and in the adopted jobs' own tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from dms.artifacts.jobrun import RunFiles
from dms.artifacts.staging import JobFiles
from dms.artifacts.store import Artifact
from dms.executor.base import EndReason, Executor, LogChunk, RunResult
from dms.jobs.adopt import Adopting, last_checkpoint, resume_point
from dms.jobs.cp_files import outputs_left
from dms.jobs.cp_outcome import outcome
from dms.jobs.cp_run import RunEnd
from dms.jobs.logbudget import LogBudget
from dms.jobs.spec import JobSpec
from dms.jobs.states import CPState
from dms.store.jobs import EventLog, JobStore
from dms.store.models import CPJobRow

if TYPE_CHECKING:
    from dms.jobs.provider import ProviderSettings

log = logging.getLogger(__name__)

ORPHAN_MARGIN_S = 5.0


class Host(Protocol):
    """What these methods use of the provider."""

    _executor: Executor
    _jobs: JobStore[CPJobRow]
    _events: EventLog
    _files: JobFiles | None
    _tasks: dict[str, asyncio.Task[None]]
    _requesters: dict[str, str]
    _orphans: dict[str, asyncio.Event]
    _settings: ProviderSettings

    @property
    def executor_problem(self) -> str | None: ...
    def _run_files(self, job_id: str, spec: JobSpec, sp_peer: str) -> RunFiles | None: ...
    def _log_sink(self, job_id: str, budget: LogBudget) -> Callable[[LogChunk], Awaitable[None]]: ...
    async def _move(
        self, job_id: str, current: CPState, new: CPState, shown: dict[str, Any] | None = None, **values: Any
    ) -> CPState: ...
    async def _finish(
        self, job_id: str, current: CPState, final: CPState, code: int | None, reason: str | None,
        outputs: Artifact | None = None,
    ) -> None: ...  # fmt: skip
    def _running(self, job_id: str, state: CPState) -> AbstractAsyncContextManager[RunEnd]: ...
    async def _resume(self, row: CPJobRow) -> None: ...
    async def _stop_unless_attached(self, job_id: str) -> None: ...


class Restarting:
    """Mixed into `ProviderService`."""

    async def _reconcile(self: Host) -> None:
        """Adopt the live jobs whose containers still run; end the others as their containers ended."""
        live = await self._jobs.list({s.value for s in CPState if not s.is_terminal()}, limit=None)
        adopted = set()
        if not self.executor_problem and isinstance(self._executor, Adopting):
            for row in live:
                if row.state in (CPState.STARTING, CPState.RUNNING) and await self._executor.adopt(row.job_id):
                    adopted.add(row.job_id)
        leftovers = {} if self.executor_problem else {x.job_id: x for x in await self._executor.reconcile()}
        for row in live:
            if row.job_id in adopted:
                self._orphans[row.job_id] = asyncio.Event()  # set when its requester re-attaches
                self._tasks[row.job_id] = asyncio.create_task(self._resume(row))
                self._requesters[row.job_id] = row.sp_peer_id
                log.info("adopted job %s after restart: its container still runs", row.job_id)
                continue
            left = leftovers.get(row.job_id)
            outputs = None
            if left is not None and not left.running and left.exit_code is not None:
                code = left.exit_code
                state, reason = outcome(RunResult(code, EndReason.EXITED), int(row.spec["resources"]["memory_mb"]))
                outputs = await outputs_left(self._files, row.job_id)  # it ended while the provider was down
            else:
                code, state, reason = None, CPState.FAILED, "the provider restarted while the job ran"
            await self._finish(row.job_id, CPState(row.state), state, code, reason, outputs)
            log.info("reconciled job %s after restart: %s", row.job_id, state)
        if self._files is not None:  # what a crash left, but the adopted jobs' folders (their containers use them)
            await asyncio.to_thread(self._files.clear, frozenset(adopted))

    async def _resume(self: Host, row: CPJobRow) -> None:
        """Follow an adopted job to its end from where its stored output stops (after a restart), with its
        files' hooks as a fresh run has them: checkpoints go on, outputs are collected at the end; it ends
        through the same code as a fresh run (`_running`)."""
        job_id = row.job_id
        async with self._running(job_id, CPState(row.state)) as run:
            if run.state == CPState.STARTING:
                run.state = await self._move(job_id, run.state, CPState.RUNNING)
            spec = JobSpec.model_validate(row.spec)
            left = spec.duration_s - (datetime.now(UTC) - row.created_at).total_seconds()
            after = await resume_point(self._events, job_id)
            files = run.files = self._run_files(job_id, spec, row.sp_peer_id)
            dump = files.adopt(await last_checkpoint(self._events, job_id)) if files is not None else None
            assert isinstance(self._executor, Adopting)
            watch = asyncio.create_task(self._stop_unless_attached(job_id))
            if files is not None:
                files.started()
            try:
                result = await self._executor.follow(job_id, after, self._log_sink(job_id, run.budget),
                                                     max(left, 1.0), str(dump) if dump else None)  # fmt: skip
            finally:
                watch.cancel()
            run.ended(result, spec)
            if run.final == CPState.CANCELLED and watch.done() and not watch.cancelled():
                run.failed("its requester did not re-attach after the provider restarted")
            await run.collect()

    async def _stop_unless_attached(self: Host, job_id: str) -> None:
        """An adopted job whose requester does not re-attach within its own give-up time (3 heartbeats,
        plus a margin) was ended on its side: stop it here too."""
        attached = self._orphans.get(job_id)
        if attached is None:
            return  # its requester is back already
        try:
            await asyncio.wait_for(attached.wait(), 3 * self._settings.heartbeat_s + ORPHAN_MARGIN_S)
        except TimeoutError:
            log.info("job %s: its requester did not re-attach after the restart; stopping it", job_id)
            await self._executor.cancel(job_id)

    def _attached(self: Host, job_id: str) -> None:
        """Its requester re-attached: an adopted job waiting for it goes on."""
        waiting = self._orphans.pop(job_id, None)
        if waiting is not None:
            waiting.set()
