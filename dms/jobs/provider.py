"""The compute provider's side of a job: admit, reserve, run, report, release.

Every status change and log batch is stored as a numbered event before it is sent, so a requester that
reconnects (`attach` from a sequence number) misses nothing and sees nothing twice, and a job keeps
running when the requester's stream drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dms.artifacts.jobrun import RunFiles
from dms.artifacts.staging import InputFailed, JobFiles
from dms.artifacts.store import Artifact
from dms.errors import DmsError
from dms.executor.base import ContainerSpec, Executor, ExecutorError, GpuAssignment, LogChunk
from dms.executor.modules import ModuleStore
from dms.jobs.admission import NodeView, SandboxAsk, pick_gpus, refusal
from dms.jobs.cp_files import run_files
from dms.jobs.cp_outcome import outcome
from dms.jobs.cp_restart import Restarting
from dms.jobs.cp_run import RunEnd
from dms.jobs.cp_stream import DeploymentStreams
from dms.jobs.deadline import min_refund_deadline
from dms.jobs.executor_watch import ExecutorWatch
from dms.jobs.feed import EventFeed, Numbered
from dms.jobs.logbudget import LogBudget, LogLimits, Piece
from dms.jobs.modules import receive_module
from dms.jobs.protocol import Deploy
from dms.jobs.spec import JobSpec
from dms.jobs.states import CPState, transition
from dms.jobs.tasks import Coalesced, cancel_and_wait
from dms.jobs.transport import LineStream
from dms.onboarding.rules import Resources
from dms.onboarding.service import OnboardingService
from dms.payments.contract import run_key
from dms.payments.errors import PaymentRejected
from dms.payments.gate import PaymentGate
from dms.pricing import job_price
from dms.store.allocations import AllocationStore
from dms.store.jobs import Duplicate, EventLog, JobStore, NewEvent, Stale
from dms.store.models import CPJobRow

__all__ = ["EVENT_RETENTION", "LOG_KEEP", "LOG_TRIM_STEP", "ProviderService", "ProviderSettings", "outcome"]

log = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(hours=24)
CAPACITY_ADVERT_GAP_S = 1.0
"""Free capacity is re-advertised at most this often: the network publishes at most once a second
(`MIN_PUBLISH_INTERVAL_S`), so a shorter gap would only sign and check adverts that are never sent."""
LOG_KEEP = 5000
"""Log batches kept per job for re-attaching requesters; older ones are dropped, with a marker, in steps."""
LOG_TRIM_STEP = 1000


@dataclass(frozen=True)
class ProviderSettings:
    allow_network: bool
    image_allowlist: tuple[str, ...]
    heartbeat_s: float
    log_limits: LogLimits = field(default_factory=LogLimits)


class ProviderService(Restarting):
    def __init__(
        self,
        onboarding: OnboardingService,
        allocations: AllocationStore,
        executor: Executor,
        jobs: JobStore[CPJobRow],
        events: EventLog,
        settings: ProviderSettings,
        on_capacity_change: Callable[[], Awaitable[None]],
        payments: PaymentGate,
        modules: ModuleStore | None = None,
        files: JobFiles | None = None,
    ) -> None:
        self._onboarding = onboarding
        self._allocations = allocations
        self._executor = executor
        self._jobs = jobs
        self._events = events
        self._settings = settings
        self._capacity_changed = Coalesced(on_capacity_change, CAPACITY_ADVERT_GAP_S)
        """Re-advertises free capacity after an admission or an end, off the job's path (a burst coalesces)."""
        self._payments = payments
        self._modules = modules
        self._module_problems: dict[str, str | None] = {}
        self._files = files
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._requesters: dict[str, str] = {}
        """The requester's peer id of each job in `_tasks` (the network keeps those connections)."""
        self._feed = EventFeed(events, "cp")
        self._log_batches: defaultdict[str, int] = defaultdict(int)
        self._orphans: dict[str, asyncio.Event] = {}
        """Adopted jobs waiting for their requester to re-attach after a restart."""
        self._executors = ExecutorWatch(executor)
        self._watch: asyncio.Task[None] | None = None
        self._streams = DeploymentStreams(
            jobs, self._feed, settings.heartbeat_s, self._admit, self.cancel, self._attached,
            lambda job_id: job_id in self._tasks, executor.cancel,
        )  # fmt: skip

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the engine, and settle jobs that were live when the daemon last stopped."""
        await self._executors.check()
        self._watch = asyncio.create_task(self._executors.run(self._capacity_changed))
        if self.executor_problem:
            log.warning("executor unavailable: %s; this node will refuse jobs", self.executor_problem)
        await self._events.prune(EVENT_RETENTION)
        await self._reconcile()

    async def stop(self) -> None:
        await cancel_and_wait([*self._streams.fences, *self._tasks.values(), *([self._watch] if self._watch else [])])
        await self._capacity_changed.close()

    async def job(self, job_id: str) -> CPJobRow | None:
        """The job as this provider runs it (None if it never reached here)."""
        return await self._jobs.get(job_id)

    @property
    def working_executors(self) -> tuple[str, ...]:
        """The kinds of job this node can run now ("docker", "wasm"), as advertised."""
        return self._executors.working

    @property
    def executor_problem(self) -> str | None:
        """None when some executor works (see `executor_problems` for each kind)."""
        return self._executors.problem

    @property
    def executor_problems(self) -> dict[str, str | None]:
        return self._executors.problems

    @property
    def running(self) -> int:
        """Jobs admitted here and not ended yet."""
        return len(self._tasks)

    @property
    def peers_with_jobs(self) -> frozenset[str]:
        """The requesters of the jobs admitted here and not ended yet."""
        return frozenset(self._requesters.values())

    # --- admission ------------------------------------------------------------------------------

    async def _view(self, spec: JobSpec) -> NodeView:
        rec = await self._onboarding.get()
        problem = self.executor_problems.get(spec.executor, f"this provider has no {spec.executor} executor")
        present = False
        if problem is None:
            try:
                present = await self._executor.has_image(spec.runs)
            except ExecutorError as exc:
                problem = str(exc)
        return NodeView(
            onboarded=rec is not None,
            available=rec is not None and rec.is_available,
            executor_problem=problem,
            free=await self._onboarding.free(),
            machine_cores=self._onboarding.machine.cores,
            gpus=self._onboarding.machine.gpus,
            image_allowlist=self._settings.image_allowlist,
            image_present=present,
            working_executors=self.working_executors,
            module_problem=await self._module_problem(spec) if present else None,
        )

    async def _module_problem(self, spec: JobSpec) -> str | None:
        """Why the wasm job's module cannot run here; remembered per module."""
        if spec.module is None or self._modules is None:
            return None
        if spec.module not in self._module_problems:
            try:
                self._module_problems[spec.module] = (await self._modules.info(spec.module)).problem
            except DmsError as exc:
                self._module_problems[spec.module] = str(exc)
        return self._module_problems[spec.module]

    async def offer(self, req: Deploy, sp_peer: str) -> str | None:
        """Admit and start the job; the refusal reason when it is not admitted (nothing is started then)."""
        spec, r = req.spec, req.spec.resources
        ask = SandboxAsk(
            req.sandbox.privileged, req.sandbox.network_mode, tuple(req.sandbox.mounts),
            tuple(req.sandbox.cap_add), tuple(req.sandbox.devices),
        )  # fmt: skip
        tx_hash = None
        if self._payments.escrow:  # never trust the SP: verify the deposit ourselves, against our own price
            rec = await self._onboarding.get()
            if rec is None:
                return "the provider is not onboarded"
            price = job_price(rec.ntx_price, r.cpu_mhz, spec.duration_s)
            try:
                tx_hash = await self._payments.verify(
                    req.payment.tx_hash, run_key(req.job_id, req.payment.run), rec.payment_addr, price,
                    req.payment.arbiter,
                    min_refund_deadline(spec.duration_s, time.time()),
                )  # fmt: skip
            except PaymentRejected as exc:
                log.info("refused job %s from %s: payment rejected: %s (%s)", req.job_id, sp_peer, exc, exc.details)
                return f"payment rejected: {exc.reason}"
        async with self._onboarding.ledger():  # check and reserve as one step, against resizes and offboarding
            if await self._jobs.get(req.job_id) is not None:
                return f"job id {req.job_id} is already known to this provider"
            node = await self._view(spec)
            reason = refusal(node, spec, ask, self._settings.allow_network)
            if reason is not None:
                log.info("refused job %s from %s: %s", req.job_id, sp_peer, reason)
                return reason
            free_gpus = [g for g in node.gpus if g.index in node.free.gpus]
            gpus = pick_gpus(free_gpus, r.gpus, r.vram_mb, r.gpu_vendor) if r.gpus else ()
            assert gpus is not None  # refusal() checked there are enough
            self._feed.fresh(req.job_id)  # a new id here (checked above), so its events start at 1
            admitted = Numbered(await self._feed.number(req.job_id), "status", {"state": CPState.ADMITTED.value})
            try:  # the row and its first event together
                await self._jobs.create(
                    [NewEvent("cp", admitted.seq, admitted.kind, admitted.data)], job_id=req.job_id,
                    sp_peer_id=sp_peer, state=CPState.ADMITTED.value, spec=spec.model_dump(), tx_hash=tx_hash,
                )  # fmt: skip
            except BaseException as exc:  # nothing stored: its numbers start again at 1 if it comes back
                self._feed.forget(req.job_id)
                if isinstance(exc, Duplicate):
                    return "payment rejected: reused (that deposit paid for another job)"
                raise
            held = Resources(r.cpu_mhz, r.memory_mb, tuple(g.index for g in gpus), r.disk_mb)
            await self._allocations.hold(req.job_id, held)
        self._feed.publish(req.job_id, admitted)
        self._capacity_changed()
        assignment = GpuAssignment(gpus[0].vendor, tuple(str(g.index) for g in gpus)) if gpus else None
        network = ask.network_mode == "default"  # refusal() let it through only if the operator allows it
        self._tasks[req.job_id] = asyncio.create_task(self._run(req.job_id, spec, assignment, network, sp_peer))
        self._requesters[req.job_id] = sp_peer
        log.info("admitted job %s from %s", req.job_id, sp_peer)
        return None

    async def _run(self, job_id: str, spec: JobSpec, gpus: GpuAssignment | None, network: bool, sp_peer: str) -> None:
        async with self._running(job_id, CPState.ADMITTED) as run:
            run.state = await self._move(job_id, run.state, CPState.STARTING)
            files = run.files = self._run_files(job_id, spec, sp_peer)
            mounts, seed, dump = await files.prepare() if files is not None else ((), None, None)

            async def started() -> None:
                run.state = await self._move(job_id, run.state, CPState.RUNNING)
                if files is not None:
                    files.started()

            r = spec.resources
            result = await self._executor.run(
                ContainerSpec(
                    job_id=job_id, image=spec.runs, command=tuple(spec.argv), env=dict(spec.env),
                    cores=r.cores, memory_mb=r.memory_mb, disk_mb=r.disk_mb, timeout_s=spec.duration_s,
                    network=network, gpus=gpus, kind=spec.executor, fuel=spec.fuel, mounts=mounts,
                    workspace_seed=str(seed) if seed else None, workspace_dump=str(dump) if dump else None,
                ),
                self._log_sink(job_id, run.budget),
                started,
            )  # fmt: skip
            run.ended(result, spec)
            await run.collect()

    @contextlib.asynccontextmanager
    async def _running(self, job_id: str, state: CPState) -> AsyncIterator[RunEnd]:
        """A run's task (fresh or adopted) from its first move to its end: an executor or input error fails
        the job; whatever happens (a cancellation too) the last logs, the final move and the release follow,
        then the job's folders are released (after its result is out; `files.finish()` kept the outputs)."""
        run = RunEnd(state, LogBudget(self._settings.log_limits, time.monotonic()))
        try:
            yield run
        except (ExecutorError, InputFailed) as exc:
            run.failed(str(exc))
        finally:
            self._tasks.pop(job_id, None)
            self._requesters.pop(job_id, None)
            self._orphans.pop(job_id, None)
            try:
                await asyncio.shield(self._last_logs_then_finish(job_id, run))
            finally:
                if run.files is not None:
                    await asyncio.shield(run.files.close())

    def _run_files(self, job_id: str, spec: JobSpec, sp_peer: str) -> RunFiles | None:
        return run_files(self._files, self._executor, job_id, spec, sp_peer, self._emit)

    def _log_sink(self, job_id: str, budget: LogBudget) -> Callable[[LogChunk], Awaitable[None]]:
        async def logs(chunk: LogChunk) -> None:
            now = time.monotonic()
            out = budget.add("stdout", chunk.stdout, now) if chunk.stdout else []
            await self._emit_logs(job_id, out + (budget.add("stderr", chunk.stderr, now) if chunk.stderr else []),
                                  chunk.until_ns)  # fmt: skip

        return logs

    async def _last_logs_then_finish(self, job_id: str, run: RunEnd) -> None:
        """The tail of the output (after the marker, if the middle was dropped) goes before the result."""
        with contextlib.suppress(Exception):
            await self._emit_logs(job_id, run.budget.end())
        self._log_batches.pop(job_id, None)
        if run.budget.dropped_total:
            log.info("job %s: %d of %d characters of output dropped (log budget or rate)", job_id,
                     run.budget.dropped_total, run.budget.total)  # fmt: skip
        await self._finish(job_id, run.state, run.final, run.code, run.reason, run.outputs)

    async def _move(
        self, job_id: str, current: CPState, new: CPState, shown: dict[str, Any] | None = None, **values: Any
    ) -> CPState:
        """Store the move (compare-and-set on `current`) with its event, in one transaction; then publish it.
        `shown`: more for a result event only (its outputs), not stored in the row."""
        transition(current, new)
        kind, data = (
            ("result", {"state": new.value, **values, **(shown or {})})
            if new.is_terminal()
            else ("status", {"state": new.value, "at": time.time()})
        )
        item = Numbered(await self._feed.number(job_id), kind, data)
        await self._jobs.commit(
            job_id, current.value, [NewEvent("cp", item.seq, kind, data)], state=new.value, **values
        )
        self._feed.publish(job_id, item)
        return new

    async def _finish(
        self,
        job_id: str,
        current: CPState,
        final: CPState,
        code: int | None,
        reason: str | None,
        outputs: Artifact | None = None,
    ) -> None:
        shown = {"outputs": {"sha256": outputs.sha256, "size": outputs.size}} if outputs is not None else None
        try:
            await self._move(job_id, current, final, shown, exit_code=code, reason=reason)
        except Stale:
            # This task is the row's one writer: it is out of step only when a cancellation (shutdown) landed
            # after a move was stored but before it returned. End the job from where the row really is.
            row = await self._jobs.get(job_id)
            if row is None or CPState(row.state).is_terminal():
                raise
            await self._move(job_id, CPState(row.state), final, shown, exit_code=code, reason=reason)
        async with self._onboarding.ledger():
            await self._allocations.release(job_id)
        self._feed.forget(job_id)
        self._capacity_changed()
        log.info("job %s %s%s", job_id, final.value, f": {reason}" if reason and final != CPState.COMPLETED else "")

    async def cancel(self, job_id: str, by_peer: str) -> str | None:
        """Stop a job on its requester's behalf; why not, when it cannot be cancelled."""
        row = await self._jobs.get(job_id)
        if row is None or row.sp_peer_id != by_peer:
            return f"no job {job_id} from this peer"
        if CPState(row.state).is_terminal():
            return f"job {job_id} already ended ({row.state})"
        await self._executor.cancel(job_id)
        return None

    # --- events ---------------------------------------------------------------------------------

    async def _bound_logs(self, job_id: str) -> None:
        self._log_batches[job_id] += 1
        if self._log_batches[job_id] < LOG_KEEP + LOG_TRIM_STEP:
            return
        dropped = await self._events.trim("cp", job_id, "logs", LOG_KEEP)
        self._log_batches[job_id] = LOG_KEEP
        note = f"[dms: {dropped} older log batches were dropped to bound the provider's buffer]\n"
        await self._emit(job_id, "logs", {"stdout": "", "stderr": note})

    async def _emit_logs(self, job_id: str, pieces: list[Piece], until_ns: int = 0) -> None:
        """One event per piece; the last carries the engine time of the chunk, where a re-adopted job resumes."""
        for i, (stream, text) in enumerate(pieces):
            data: dict[str, Any] = (
                {"stdout": text, "stderr": ""} if stream == "stdout" else {"stdout": "", "stderr": text}
            )
            if until_ns and i == len(pieces) - 1:
                data["until"] = until_ns
            await self._emit(job_id, "logs", data)
            await self._bound_logs(job_id)

    async def _emit(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        await self._feed.emit(job_id, kind, data)

    # --- the deployment stream ------------------------------------------------------------------

    async def serve(self, stream: LineStream) -> None:
        """Handle one `/dms/deployment/1.0.0` stream from a requester, until the job's end or a drop."""
        await self._streams.serve(stream)

    async def _admit(self, stream: LineStream, req: Deploy, sp_peer: str) -> str | None:
        """A wasm job's module, when we lack it, arrives in the stream before admission."""
        reason = None
        if self._modules is not None and self.executor_problems.get(req.spec.executor) is None:
            reason = await receive_module(stream, req, self._modules)  # else admission refuses it with the reason
        return reason or await self.offer(req, sp_peer)
