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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dms.artifacts.jobrun import RunFiles
from dms.artifacts.staging import InputFailed, JobFiles
from dms.artifacts.store import Artifact
from dms.errors import DmsError
from dms.executor.base import (
    ContainerSpec,
    EndReason,
    Executor,
    ExecutorError,
    GpuAssignment,
    LogChunk,
    RunResult,
)
from dms.executor.modules import ModuleStore
from dms.jobs.admission import NodeView, SandboxAsk, pick_gpus, refusal
from dms.jobs.adopt import Adopting, last_checkpoint, resume_point
from dms.jobs.cp_files import outputs_left, run_files
from dms.jobs.deadline import min_refund_deadline
from dms.jobs.executor_watch import ExecutorWatch
from dms.jobs.feed import EventFeed, Numbered
from dms.jobs.logbudget import LogBudget, LogLimits, Piece
from dms.jobs.modules import receive_module
from dms.jobs.protocol import (
    FIRST_LINE_TIMEOUT_S,
    MAX_LINE,
    Accepted,
    Attach,
    Cancel,
    Deploy,
    End,
    Event,
    Heartbeat,
    ModuleChunk,
    ProtocolError,
    Rejected,
    decode_to_provider,
    encode,
    joined,
)
from dms.jobs.spec import JobSpec
from dms.jobs.states import CPState, transition
from dms.jobs.tasks import Coalesced, cancel_and_wait
from dms.jobs.transport import LineStream, StreamClosed
from dms.onboarding.rules import Resources
from dms.onboarding.service import OnboardingService
from dms.payments.contract import run_key
from dms.payments.errors import PaymentRejected
from dms.payments.gate import PaymentGate
from dms.pricing import job_price
from dms.store.allocations import AllocationStore
from dms.store.jobs import Duplicate, EventLog, JobStore, NewEvent, Stale
from dms.store.models import CPJobRow

log = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(hours=24)
LOG_KEEP = 5000
"""Log batches kept per job for re-attaching requesters; older ones are dropped, with a marker, in steps."""
LOG_TRIM_STEP = 1000
ORPHAN_MARGIN_S = 5.0


@dataclass(frozen=True)
class ProviderSettings:
    allow_network: bool
    image_allowlist: tuple[str, ...]
    heartbeat_s: float
    log_limits: LogLimits = field(default_factory=LogLimits)


def outcome(result: RunResult, memory_mb: int, disk_mb: int = 0) -> tuple[CPState, str | None]:
    """The final state and, for a failure, the reason shown to the user."""
    if result.reason == EndReason.CANCELLED:
        return CPState.CANCELLED, "cancelled"
    if result.reason == EndReason.TIMEOUT:
        return CPState.FAILED, f"timeout: {result.detail}" if result.detail else "timeout"
    if result.reason == EndReason.OOM_KILLED:
        return CPState.FAILED, result.detail or f"killed: out of memory (limit {memory_mb} MB)"
    if result.reason == EndReason.DISK_LIMIT:
        return CPState.FAILED, f"disk limit: the job filled its {disk_mb} MB /workspace (exit code {result.exit_code})"
    if result.exit_code != 0:
        return CPState.FAILED, f"exited with code {result.exit_code}" + (f" ({result.detail})" if result.detail else "")
    return CPState.COMPLETED, None


class ProviderService:
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
        self._capacity_changed = Coalesced(on_capacity_change)
        """Re-advertises free capacity after an admission or an end, off the job's path (a burst coalesces)."""
        self._payments = payments
        self._modules = modules
        self._module_problems: dict[str, str | None] = {}
        self._files = files
        self._followers: defaultdict[str, int] = defaultdict(int)
        self._fences: set[asyncio.Task[None]] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._requesters: dict[str, str] = {}
        """The requester's peer id of each job in `_tasks` (the network keeps those connections)."""
        self._feed = EventFeed(events, "cp")
        self._log_batches: defaultdict[str, int] = defaultdict(int)
        self._orphans: dict[str, asyncio.Event] = {}
        """Adopted jobs waiting for their requester to re-attach after a restart."""
        self._executors = ExecutorWatch(executor)
        self._watch: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the engine, and settle jobs that were live when the daemon last stopped."""
        await self._executors.check()
        self._watch = asyncio.create_task(self._executors.run(self._capacity_changed))
        if self.executor_problem:
            log.warning("executor unavailable: %s; this node will refuse jobs", self.executor_problem)
        await self._events.prune(EVENT_RETENTION)
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

    async def stop(self) -> None:
        await cancel_and_wait([*self._fences, *self._tasks.values(), *([self._watch] if self._watch else [])])
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
            try:
                await self._jobs.create(
                    job_id=req.job_id, sp_peer_id=sp_peer, state=CPState.ADMITTED.value, spec=spec.model_dump(),
                    tx_hash=tx_hash,
                )  # fmt: skip
            except Duplicate:
                return "payment rejected: reused (that deposit paid for another job)"
            held = Resources(r.cpu_mhz, r.memory_mb, tuple(g.index for g in gpus), r.disk_mb)
            await self._allocations.hold(req.job_id, held)
        await self._emit(req.job_id, "status", {"state": CPState.ADMITTED.value})
        self._capacity_changed()
        assignment = GpuAssignment(gpus[0].vendor, tuple(str(g.index) for g in gpus)) if gpus else None
        network = ask.network_mode == "default"  # refusal() let it through only if the operator allows it
        self._tasks[req.job_id] = asyncio.create_task(self._run(req.job_id, spec, assignment, network, sp_peer))
        self._requesters[req.job_id] = sp_peer
        log.info("admitted job %s from %s", req.job_id, sp_peer)
        return None

    async def _run(self, job_id: str, spec: JobSpec, gpus: GpuAssignment | None, network: bool, sp_peer: str) -> None:
        state = CPState.ADMITTED
        code: int | None = None
        final: CPState = CPState.FAILED
        reason: str | None = "the provider stopped"
        budget = LogBudget(self._settings.log_limits, time.monotonic())
        outputs: Artifact | None = None
        files: RunFiles | None = None
        try:
            state = await self._move(job_id, state, CPState.STARTING)
            files = self._run_files(job_id, spec, sp_peer)
            mounts, seed, dump = await files.prepare() if files is not None else ((), None, None)

            async def started() -> None:
                nonlocal state
                state = await self._move(job_id, state, CPState.RUNNING)
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
                self._log_sink(job_id, budget),
                started,
            )  # fmt: skip
            code = result.exit_code
            final, reason = outcome(result, r.memory_mb, r.disk_mb)
            if files is not None:
                outputs, failure = await files.finish()
                final, reason = (CPState.FAILED, failure) if failure else (final, reason)
        except (ExecutorError, InputFailed) as exc:
            final, reason = CPState.FAILED, str(exc)
        finally:
            self._tasks.pop(job_id, None)
            self._requesters.pop(job_id, None)
            try:
                await asyncio.shield(self._last_logs_then_finish(job_id, budget, state, final, code, reason, outputs))
            finally:  # the job's folders go after its result is out (the outputs were kept by files.finish())
                if files is not None:
                    await asyncio.shield(files.close())

    def _run_files(self, job_id: str, spec: JobSpec, sp_peer: str) -> RunFiles | None:
        return run_files(self._files, self._executor, job_id, spec, sp_peer, self._emit)

    async def _resume(self, row: CPJobRow) -> None:
        """Follow an adopted job to its end from where its stored output stops (after a restart), with its
        files' hooks as a fresh run has them: checkpoints go on, outputs are collected at the end."""
        job_id, state = row.job_id, CPState(row.state)
        code: int | None = None
        final: CPState = CPState.FAILED
        reason: str | None = "the provider stopped"
        budget = LogBudget(self._settings.log_limits, time.monotonic())
        outputs: Artifact | None = None
        files: RunFiles | None = None
        try:
            if state == CPState.STARTING:
                state = await self._move(job_id, state, CPState.RUNNING)
            spec = JobSpec.model_validate(row.spec)
            left = spec.duration_s - (datetime.now(UTC) - row.created_at).total_seconds()
            after = await resume_point(self._events, job_id)
            files = self._run_files(job_id, spec, row.sp_peer_id)
            dump = files.adopt(await last_checkpoint(self._events, job_id)) if files is not None else None
            assert isinstance(self._executor, Adopting)
            watch = asyncio.create_task(self._stop_unless_attached(job_id))
            if files is not None:
                files.started()
            try:
                result = await self._executor.follow(job_id, after, self._log_sink(job_id, budget), max(left, 1.0),
                                                     str(dump) if dump else None)  # fmt: skip
            finally:
                watch.cancel()
            code = result.exit_code
            final, reason = outcome(result, spec.resources.memory_mb, spec.resources.disk_mb)
            if final == CPState.CANCELLED and watch.done() and not watch.cancelled():
                final, reason = CPState.FAILED, "its requester did not re-attach after the provider restarted"
            if files is not None:
                outputs, failure = await files.finish()
                final, reason = (CPState.FAILED, failure) if failure else (final, reason)
        except (ExecutorError, InputFailed) as exc:
            final, reason = CPState.FAILED, str(exc)
        finally:
            if files is not None:
                await asyncio.shield(files.close())
            self._tasks.pop(job_id, None)
            self._requesters.pop(job_id, None)
            self._orphans.pop(job_id, None)
            await asyncio.shield(self._last_logs_then_finish(job_id, budget, state, final, code, reason, outputs))

    async def _stop_unless_attached(self, job_id: str) -> None:
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

    def _log_sink(self, job_id: str, budget: LogBudget) -> Callable[[LogChunk], Awaitable[None]]:
        async def logs(chunk: LogChunk) -> None:
            now = time.monotonic()
            out = budget.add("stdout", chunk.stdout, now) if chunk.stdout else []
            await self._emit_logs(job_id, out + (budget.add("stderr", chunk.stderr, now) if chunk.stderr else []),
                                  chunk.until_ns)  # fmt: skip

        return logs

    async def _last_logs_then_finish(
        self, job_id: str, budget: LogBudget, current: CPState, final: CPState, code: int | None, reason: str | None,
        outputs: Artifact | None = None,
    ) -> None:  # fmt: skip
        """The tail of the output (after the marker, if the middle was dropped) goes before the result."""
        with contextlib.suppress(Exception):
            await self._emit_logs(job_id, budget.end())
        self._log_batches.pop(job_id, None)
        if budget.dropped_total:
            log.info("job %s: %d of %d characters of output dropped (log budget or rate)", job_id,
                     budget.dropped_total, budget.total)  # fmt: skip
        await self._finish(job_id, current, final, code, reason, outputs)

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
        peer = stream.remote_peer
        try:
            try:
                first = decode_to_provider(await stream.receive(FIRST_LINE_TIMEOUT_S))
            except ProtocolError as exc:
                log.warning("bad deployment request from %s: %s", peer, exc)
                return
            if isinstance(first, Cancel):
                await self.cancel(first.job_id, peer)
                return
            if isinstance(first, ModuleChunk):
                log.warning("bad deployment request from %s: a module chunk before any deploy", peer)
                return
            if isinstance(first, Deploy):
                known = await self._jobs.get(first.job_id)
                if known is not None and known.sp_peer_id == peer:
                    reason = None  # its requester crashed before it stored our answer: re-attach from the start
                else:
                    reason = await self._receive_module(stream, first)
                    reason = reason or await self.offer(first, peer)
                after = 0
            else:
                reason = await self._check_attach(first, peer)
                after = first.after_seq
            if reason is not None:
                await stream.send(encode(Rejected(type="rejected", job_id=first.job_id, reason=reason)))
                return
            await stream.send(encode(Accepted(type="accepted", job_id=first.job_id)))
            await self._follow_fenced(stream, first.job_id, after)
        except (StreamClosed, TimeoutError):
            pass
        finally:
            await stream.close()

    async def _receive_module(self, stream: LineStream, req: Deploy) -> str | None:
        """A wasm job's module, when we lack it, arrives in the stream before admission."""
        if self._modules is None or self.executor_problems.get(req.spec.executor) is not None:
            return None  # admission refuses it with the reason
        return await receive_module(stream, req, self._modules)

    async def _check_attach(self, req: Attach, peer: str) -> str | None:
        row = await self._jobs.get(req.job_id)
        if row is None or row.sp_peer_id != peer:
            return f"no job {req.job_id} from this peer"
        waiting = self._orphans.pop(req.job_id, None)
        if waiting is not None:
            waiting.set()
        return None

    async def _follow_fenced(self, stream: LineStream, job_id: str, after: int) -> None:
        """`_follow`; once the last requester stream of a running job that may be resumed elsewhere
        (`resume: on-failure`) is gone, the job is stopped unless one re-attaches within 3 heartbeats:
        its SP may have started a new run elsewhere (the stop takes the last checkpoint first)."""
        self._followers[job_id] += 1
        try:
            await self._follow(stream, job_id, after)
        finally:
            self._followers[job_id] -= 1
            if not self._followers[job_id]:
                del self._followers[job_id]
                if job_id in self._tasks:
                    fence = asyncio.create_task(self._fence(job_id))
                    self._fences.add(fence)
                    fence.add_done_callback(self._fences.discard)

    async def _fence(self, job_id: str) -> None:
        row = await self._jobs.get(job_id)
        if row is None or row.spec.get("resume") != "on-failure":
            return
        await asyncio.sleep(3 * self._settings.heartbeat_s)  # the SP's own bound for re-attaching
        if job_id in self._tasks and not self._followers.get(job_id):
            log.warning("job %s: its requester is gone for 3 heartbeats; stopping it (it may run elsewhere)", job_id)
            await self._executor.cancel(job_id)

    async def _follow(self, stream: LineStream, job_id: str, after: int) -> None:
        """Send stored events after `after`, then live ones, heartbeats while quiet; listen for cancel."""
        reader = asyncio.create_task(self._read_cancels(stream, job_id))
        try:
            async with contextlib.aclosing(self._feed.batches(job_id, after, self._settings.heartbeat_s)) as batches:
                async for batch in batches:
                    if batch is None:
                        await stream.send(encode(Heartbeat(type="heartbeat")))
                        continue
                    lines, ended = [], False  # what there is goes in as few writes as fit (each crosses a thread)
                    for item in batch:
                        ev = Event(type="event", job_id=job_id, seq=item.seq, kind=item.kind, data=item.data)  # type: ignore[arg-type]
                        lines.append(encode(ev))
                        if item.kind == "result":
                            lines.append(encode(End(type="end", job_id=job_id)))
                            ended = True
                            break
                    for write in joined(lines, MAX_LINE):
                        await stream.send(write)
                    if ended:
                        return
        finally:
            reader.cancel()

    async def _read_cancels(self, stream: LineStream, job_id: str) -> None:
        with contextlib.suppress(StreamClosed):
            while True:
                try:
                    msg = decode_to_provider(await stream.receive(3600))
                except (ProtocolError, TimeoutError):
                    continue
                if isinstance(msg, Cancel) and msg.job_id == job_id:
                    await self.cancel(job_id, stream.remote_peer)
