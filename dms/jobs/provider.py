"""The compute provider's side of a job: admit, reserve, run, report, release.

Every status change and log batch is stored as a numbered event before it is sent, so a requester that
reconnects (`attach` from a sequence number) misses nothing and sees nothing twice, and a job keeps
running when the requester's stream drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dms.artifacts.jobrun import FilesAsk, RunFiles
from dms.artifacts.staging import InputFailed, InputRef, JobFiles
from dms.artifacts.store import Artifact
from dms.executor.base import ContainerSpec, EndReason, Executor, ExecutorError, GpuAssignment, LogChunk, RunResult
from dms.jobs.admission import NodeView, SandboxAsk, pick_gpus, refusal
from dms.jobs.feed import EventFeed
from dms.jobs.protocol import (
    Accepted,
    Attach,
    Cancel,
    Deploy,
    End,
    Event,
    Heartbeat,
    ProtocolError,
    Rejected,
    decode_to_provider,
    encode,
)
from dms.jobs.spec import JobSpec
from dms.jobs.states import CPState, transition
from dms.jobs.tasks import cancel_and_wait
from dms.jobs.transport import LineStream, StreamClosed
from dms.onboarding.rules import Resources
from dms.onboarding.service import OnboardingService
from dms.payments.errors import PaymentRejected
from dms.payments.gate import PaymentGate
from dms.pricing import job_price
from dms.store.allocations import AllocationStore
from dms.store.jobs import Duplicate, EventLog, JobStore
from dms.store.models import CPJobRow

log = logging.getLogger(__name__)

FIRST_LINE_TIMEOUT_S = 10.0
EVENT_RETENTION = timedelta(hours=24)
LOG_KEEP = 5000
"""Log batches kept per job for re-attaching requesters; older ones are dropped, with a marker, in steps."""
LOG_TRIM_STEP = 1000


@dataclass(frozen=True)
class ProviderSettings:
    allow_network: bool
    image_allowlist: tuple[str, ...]
    heartbeat_s: float


def outcome(result: RunResult, memory_mb: int) -> tuple[CPState, str | None]:
    """The final state and, for a failure, the reason shown to the user."""
    if result.reason == EndReason.CANCELLED:
        return CPState.CANCELLED, "cancelled"
    if result.reason == EndReason.TIMEOUT:
        return CPState.FAILED, "timeout"
    if result.reason == EndReason.OOM_KILLED:
        return CPState.FAILED, f"killed: out of memory (limit {memory_mb} MB)"
    if result.exit_code != 0:
        return CPState.FAILED, f"exited with code {result.exit_code}"
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
        files: JobFiles | None = None,
    ) -> None:
        self._onboarding = onboarding
        self._allocations = allocations
        self._executor = executor
        self._jobs = jobs
        self._events = events
        self._settings = settings
        self._on_capacity_change = on_capacity_change
        self._payments = payments
        self._files = files
        self._lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._feed = EventFeed(events, "cp")
        self._log_batches: defaultdict[str, int] = defaultdict(int)
        self._followers: defaultdict[str, int] = defaultdict(int)
        self._fences: set[asyncio.Task[None]] = set()
        self.executor_problem: str | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the engine, and settle jobs that were live when the daemon last stopped."""
        self.executor_problem = await self._executor.available()
        if self.executor_problem:
            log.warning("executor unavailable: %s; this node will refuse jobs", self.executor_problem)
        await self._events.prune(EVENT_RETENTION)
        live = await self._jobs.list({s.value for s in CPState if not s.is_terminal()})
        leftovers = {} if self.executor_problem else {x.job_id: x for x in await self._executor.reconcile()}
        for row in live:
            left = leftovers.get(row.job_id)
            if left is not None and not left.running and left.exit_code is not None:
                code = left.exit_code
                state, reason = outcome(RunResult(code, EndReason.EXITED), int(row.spec["resources"]["memory_mb"]))
            else:
                code, state, reason = None, CPState.FAILED, "the provider restarted while the job ran"
            await self._finish(row.job_id, CPState(row.state), state, code, reason)
            log.info("reconciled job %s after restart: %s", row.job_id, state)

    async def stop(self) -> None:
        await cancel_and_wait([*self._fences, *self._tasks.values()])

    @property
    def running(self) -> int:
        """Jobs admitted here and not ended yet."""
        return len(self._tasks)

    # --- admission ------------------------------------------------------------------------------

    async def _view(self, image: str) -> NodeView:
        rec = await self._onboarding.get()
        problem = self.executor_problem
        present = False
        if problem is None:
            try:
                present = await self._executor.has_image(image)
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
        )

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
                    req.payment.tx_hash, req.job_id, rec.payment_addr, price, req.payment.arbiter
                )
            except PaymentRejected as exc:
                log.info("refused job %s from %s: payment rejected: %s (%s)", req.job_id, sp_peer, exc, exc.details)
                return f"payment rejected: {exc.reason}"
        async with self._lock:  # check and reserve as one step
            if await self._jobs.get(req.job_id) is not None:
                return f"job id {req.job_id} is already known to this provider"
            node = await self._view(spec.image)
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
            await self._allocations.hold(req.job_id, Resources(r.cpu_mhz, r.memory_mb, tuple(g.index for g in gpus)))
        await self._emit(req.job_id, "status", {"state": CPState.ADMITTED.value})
        await self._on_capacity_change()
        assignment = GpuAssignment(gpus[0].vendor, tuple(str(g.index) for g in gpus)) if gpus else None
        network = ask.network_mode == "default"  # refusal() let it through only if the operator allows it
        self._tasks[req.job_id] = asyncio.create_task(self._run(req.job_id, spec, assignment, network, sp_peer))
        log.info("admitted job %s from %s", req.job_id, sp_peer)
        return None

    async def _run(self, job_id: str, spec: JobSpec, gpus: GpuAssignment | None, network: bool, sp_peer: str) -> None:
        state = CPState.ADMITTED
        code: int | None = None
        final: CPState = CPState.FAILED
        reason: str | None = "the provider stopped"
        outputs: Artifact | None = None
        files: RunFiles | None = None
        try:
            state = await self._move(job_id, state, CPState.STARTING)
            files = self._run_files(job_id, spec, sp_peer)
            mounts = await files.prepare() if files is not None else ()

            async def started() -> None:
                nonlocal state
                state = await self._move(job_id, state, CPState.RUNNING)
                if files is not None:
                    files.started()

            async def logs(chunk: LogChunk) -> None:
                await self._emit(job_id, "logs", {"stdout": chunk.stdout, "stderr": chunk.stderr})
                await self._bound_logs(job_id)

            r = spec.resources
            result = await self._executor.run(
                ContainerSpec(
                    job_id=job_id, image=spec.image, command=tuple(spec.command), env=dict(spec.env),
                    cores=r.cores, memory_mb=r.memory_mb, timeout_s=spec.duration_s,
                    network=network, gpus=gpus, mounts=mounts,
                ),
                logs,
                started,
            )  # fmt: skip
            code = result.exit_code
            final, reason = outcome(result, r.memory_mb)
            if files is not None:
                outputs, failure = await files.finish()
                final, reason = (CPState.FAILED, failure) if failure else (final, reason)
        except (ExecutorError, InputFailed) as exc:
            final, reason = CPState.FAILED, str(exc)
        finally:
            if files is not None:
                await asyncio.shield(files.close())
            self._tasks.pop(job_id, None)
            self._log_batches.pop(job_id, None)
            await asyncio.shield(self._finish(job_id, state, final, code, reason, outputs))

    def _run_files(self, job_id: str, spec: JobSpec, sp_peer: str) -> RunFiles | None:
        """The run's inputs, outputs and checkpoints (dms.artifacts); None on a provider without them
        (InputFailed when the job needs them)."""
        if self._files is None:
            if spec.inputs or spec.restore:
                raise InputFailed("this provider does not take job inputs")
            return None
        ck = spec.checkpoint
        ask = FilesAsk(
            tuple(InputRef(i.source, i.path) for i in spec.inputs), ck.path if ck else None,
            ck.interval_s if ck else 0.0, spec.restore,
        )  # fmt: skip

        async def emit(data: dict[str, Any]) -> None:
            await self._emit(job_id, "checkpoint", data)

        return RunFiles(self._files, job_id, ask, sp_peer, emit, functools.partial(self._executor.cancel, job_id))

    async def _move(self, job_id: str, current: CPState, new: CPState) -> CPState:
        transition(current, new)
        await self._jobs.update(job_id, state=new.value)
        await self._emit(job_id, "status", {"state": new.value})
        return new

    async def _finish(
        self, job_id: str, current: CPState, final: CPState, code: int | None, reason: str | None,
        outputs: Artifact | None = None,
    ) -> None:
        transition(current, final)
        await self._jobs.update(job_id, state=final.value, exit_code=code, reason=reason)
        await self._allocations.release(job_id)
        result: dict[str, Any] = {"state": final.value, "exit_code": code, "reason": reason}
        if outputs is not None:
            result["outputs"] = {"sha256": outputs.sha256, "size": outputs.size}
        await self._emit(job_id, "result", result)
        await self._on_capacity_change()
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
            if isinstance(first, Deploy):
                reason = await self.offer(first, peer)
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

    async def _check_attach(self, req: Attach, peer: str) -> str | None:
        row = await self._jobs.get(req.job_id)
        if row is None or row.sp_peer_id != peer:
            return f"no job {req.job_id} from this peer"
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
        await asyncio.sleep(3 * self._settings.heartbeat_s)
        if job_id in self._tasks and not self._followers.get(job_id):
            log.warning("job %s: its requester is gone for 3 heartbeats; stopping it (it may run elsewhere)", job_id)
            await self._executor.cancel(job_id)

    async def _follow(self, stream: LineStream, job_id: str, after: int) -> None:
        """Send stored events after `after`, then live ones, heartbeats while quiet; listen for cancel."""
        reader = asyncio.create_task(self._read_cancels(stream, job_id))
        try:
            async with contextlib.aclosing(self._feed.follow(job_id, after, self._settings.heartbeat_s)) as items:
                async for item in items:
                    if item is None:
                        await stream.send(encode(Heartbeat(type="heartbeat")))
                        continue
                    ev = Event(type="event", job_id=job_id, seq=item.seq, kind=item.kind, data=item.data)  # type: ignore[arg-type]
                    await stream.send(encode(ev))
                    if item.kind == "result":
                        await stream.send(encode(End(type="end", job_id=job_id)))
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
