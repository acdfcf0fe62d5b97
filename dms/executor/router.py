"""Several executors behind the one Executor contract, each job routed to the kind it asks for.

`ContainerSpec.kind` picks the executor for `run`; `has_image` routes a 64-hex-digit reference (a
module's sha256, which Docker never accepts as an image name) to the wasm executor, anything else to
docker. The set works when any of its executors does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dms.executor.base import (
    Adopting,
    ContainerSpec,
    Executor,
    ExecutorError,
    HasWorkspace,
    Leftover,
    LogSink,
    RunResult,
    StartHook,
)
from dms.executor.modules import SHA256

log = logging.getLogger(__name__)


class ExecutorSet:
    def __init__(self, executors: dict[str, Executor]) -> None:
        self._by_kind = executors
        self._running: dict[str, str] = {}
        """job id -> the kind of executor running it."""
        self._last: dict[str, str | None] | None = None

    def _for(self, kind: str) -> Executor:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise ExecutorError(f"this provider has no {kind} executor") from None

    async def kinds(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for ex in self._by_kind.values():
            found.update(await ex.kinds())
        self._last = found
        return found

    async def available(self) -> str | None:
        kinds = await self.kinds()
        if any(problem is None for problem in kinds.values()):
            return None
        return "; ".join(f"{k}: {p}" for k, p in kinds.items()) or "no executor is configured"

    async def has_image(self, image: str) -> bool:
        return await self._for("wasm" if SHA256.match(image) else "docker").has_image(image)

    async def run(self, spec: ContainerSpec, on_logs: LogSink, on_start: StartHook | None = None) -> RunResult:
        executor = self._for(spec.kind)
        self._running[spec.job_id] = spec.kind
        try:
            return await executor.run(spec, on_logs, on_start)
        finally:
            self._running.pop(spec.job_id, None)

    async def adopt(self, job_id: str) -> bool:
        """After a restart: whether an executor that keeps its jobs across restarts still runs this one
        (it is then that executor's again)."""
        for kind, executor in self._by_kind.items():
            if isinstance(executor, Adopting) and await executor.adopt(job_id):
                self._running[job_id] = kind
                return True
        return False

    async def follow(
        self, job_id: str, after_ns: int, on_logs: LogSink, timeout_s: float | None, workspace_dump: str | None = None
    ) -> RunResult:
        """An adopted job's output after `after_ns`, then its result. Raises ExecutorError if not adopted."""
        executor = self._by_kind.get(self._running.get(job_id, ""))
        if not isinstance(executor, Adopting):
            raise ExecutorError(f"job {job_id} was not adopted by an executor here")
        try:
            return await executor.follow(job_id, after_ns, on_logs, timeout_s, workspace_dump)
        finally:
            self._running.pop(job_id, None)

    async def dump_workspace(self, job_id: str, dest: Path) -> None:
        """The running job's executor copies its /workspace (HasWorkspace); ExecutorError when it cannot."""
        executor = self._by_kind.get(self._running.get(job_id, ""))
        if not isinstance(executor, HasWorkspace):
            raise ExecutorError(f"job {job_id} has no disk to copy on this provider")
        await executor.dump_workspace(job_id, dest)

    async def cancel(self, job_id: str) -> None:
        """The executor running the job stops it; a job not started yet is marked cancelled with every one
        (one whose engine does not answer has nothing of it to stop)."""
        kind = self._running.get(job_id)
        if kind is not None:
            await self._by_kind[kind].cancel(job_id)
            return
        for name, ex in self._by_kind.items():
            try:
                await ex.cancel(job_id)
            except Exception as exc:  # an absent engine's error in any of its client's forms
                log.debug("cancel %s on %s: %s", job_id, name, exc)

    async def reconcile(self) -> list[Leftover]:
        """Reconcile every executor that works (as last checked: an engine that does not answer is not asked
        again)."""
        kinds = self._last if self._last is not None else await self.kinds()
        found: list[Leftover] = []
        for kind, ex in self._by_kind.items():
            if kinds.get(kind) is None:
                found.extend(await ex.reconcile())
        return found
