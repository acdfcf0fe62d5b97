"""The service provider's side of a job: quote, wait for payment, dispatch, follow, report to dashboards.

What dashboards see are frames in NuNet's shapes (`job-submitted`, `deployment-response`,
`log-stream-response`, `job-failed`, `job-completed`). Each frame is stored as a numbered event before it
is delivered, so a dashboard that reconnects and subscribes again gets the whole story, once.

Each live job has one owner (`SPJob`, in sp_job.py) that alone writes its row and numbers its frames;
this service creates the owners, hands them the dashboards' commands, and serves the frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dms import limits
from dms.errors import Conflict, FieldProblem, InvalidInput, NotFound
from dms.executor.modules import ModuleStore
from dms.jobs.deadline import too_long
from dms.jobs.feed import EventFeed
from dms.jobs.link import Opening, close_opened, open_ahead
from dms.jobs.protocol import MAX_LINE, Deploy, Payment, encode
from dms.jobs.settlement import SettlementWorker
from dms.jobs.sp_files import FileHooks
from dms.jobs.sp_job import OPENED_FRESH_S, Deps, SPJob
from dms.jobs.sp_messages import CancelJob, Frame, Pay, log_frames
from dms.jobs.spec import JobSpec
from dms.jobs.states import SPState
from dms.jobs.tasks import cancel_and_wait
from dms.jobs.transport import Dialer
from dms.matching import Candidate, Needs, place
from dms.payments.errors import PaymentRejected
from dms.payments.gate import PaymentGate
from dms.store.jobs import EventLog, JobStore, TransactionLog
from dms.store.models import SPJobRow

__all__ = ["RequesterService", "RequesterSettings", "log_frames"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequesterSettings:
    heartbeat_s: float
    quote_ttl_s: float = 600.0
    max_attempts: int = 3


def wire_problem(spec: JobSpec) -> None:
    """InvalidInput when the job's deployment message would not fit the wire (protocol.MAX_LINE): a job the
    provider could never read is refused here, with the size, instead of failing as a closed stream later."""
    payment = Payment(price=limits.MAX_WEI, tx_hash="0x" + "f" * 64, arbiter="0x" + "f" * 40)  # the largest
    size = len(encode(Deploy(type="deploy", job_id="f" * 64, spec=spec, payment=payment)))
    if size > MAX_LINE:
        raise InvalidInput(
            f"the job is too large to send to a provider: its deployment message is {size} bytes, over the "
            f"{MAX_LINE} byte limit of the peer protocol (make env and command smaller)",
            [{"field": "env/command", "message": f"{size} bytes in all, at most {MAX_LINE}"}],
            code="too_large",
        )


PLACEMENT_HOLD_S = 30.0
"""How long an unpaid quote counts against its provider's free capacity."""
AHEAD_PER_PROVIDER = 8
"""Streams opened at the quote to one provider within OPENED_FRESH_S, at most: a loop of quotes (or quotes
paid after the stream went stale, as with a slow chain) costs the provider no more than that many waiting
streams; later quotes open theirs at the payment."""


@dataclass(frozen=True)
class Placed:
    peer: str
    cpu_mhz: int
    memory_mb: int
    at: float


class RequesterService:
    def __init__(
        self,
        jobs: JobStore[SPJobRow],
        events: EventLog,
        candidates: Callable[[], list[Candidate]],
        channel: Callable[[], Awaitable[str]],
        dialer: Dialer,
        settings: RequesterSettings,
        payments: PaymentGate,
        transactions: TransactionLog,
        modules: ModuleStore | None = None,
        files: FileHooks | None = None,
    ) -> None:
        self._jobs = jobs
        self._candidates = candidates
        self._channel = channel
        self._settings = settings
        self._payments = payments
        self._modules = modules
        self._feed = EventFeed(events, "sp")
        self._settler = SettlementWorker(transactions, payments)
        self._deps = Deps(
            jobs, self._feed, dialer, payments, transactions, settings.heartbeat_s, self._settler.kick, modules, files,
            self._replacements, settings.quote_ttl_s,
        )  # fmt: skip
        self._owners: dict[str, SPJob] = {}
        self._placed: dict[str, Placed] = {}
        self._quoting: set[str] = set()
        """Jobs quoted whose row is being stored (no owner yet): their placements count already."""
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Give every job that was live when the daemon stopped its owner again, however many there are:
        quotes wait for payment (or expire), paid jobs are dispatched, submitted ones re-attached."""
        await self._settler.start()
        live = {s.value for s in SPState if not s.is_terminal()}
        rows = await self._jobs.list(live, limit=None)
        for row in rows:
            self._own(row.job_id)
        if rows:
            log.info("resumed %d live jobs", len(rows))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks.values())
        await self._settler.stop()

    @property
    def peers_with_jobs(self) -> frozenset[str]:
        """The providers of the jobs this node dispatched that have not ended yet."""
        owners = list(self._owners.values())
        return frozenset(p for o in owners if not o.state.is_terminal() and (p := o.provider_peer) is not None)

    def _own(self, job_id: str, opening: Opening | None = None) -> SPJob:
        """The job's owner, started if it has none (synchronous: two callers cannot both start one).
        `opening`: the deployment stream to its first candidate, opened at the quote."""
        owner = self._owners.get(job_id)
        if owner is None:
            owner = self._owners[job_id] = SPJob(job_id, self._deps, opening)
            task = self._tasks[job_id] = asyncio.create_task(owner.run())

            def gone(_: asyncio.Task[None]) -> None:
                if self._owners.get(job_id) is owner:
                    del self._owners[job_id], self._tasks[job_id]

            task.add_done_callback(gone)
        return owner

    async def _live_owner(self, job_id: str, refused: str) -> SPJob:
        """The owner of a live job; NotFound, or Conflict(`refused` + its state) once it has ended."""
        owner = self._owners.get(job_id)
        if owner is not None:
            return owner
        row = await self._row(job_id)
        if SPState(row.state).is_terminal():
            raise Conflict(f"job {job_id} {refused} (it is {row.state})", code="wrong_state")
        return self._own(job_id)

    # --- quote and payment ----------------------------------------------------------------------

    async def request_service(self, spec: JobSpec, target_peer: str | None) -> dict[str, Any]:
        """Choose a provider and return the quote; NotFound-like Conflict when nobody fits."""
        r = spec.resources
        if spec.module is not None and (self._modules is None or not self._modules.has(spec.module)):
            missing = f"module {spec.module} is not in this node's module registry (add it: nunet module add FILE)"
            raise InvalidInput.of([FieldProblem("module", missing)])
        needs = await self._needs(spec, target_peer)
        wire_problem(spec)
        try:
            why = too_long(spec.duration_s, await self._payments.refund_delay_s())
        except PaymentRejected as exc:
            raise Conflict(f"cannot read the escrow's refund delay: {exc}", code="chain_unreachable") from exc
        if why is not None:
            raise Conflict(why, code="duration_too_long")
        advertised = self._candidates()
        placement = place(self._minus_in_flight(advertised), needs)
        if not placement.ranked:  # what this SP placed only steers the choice; the adverts decide "no room"
            placement = place(advertised, needs)
        if not placement.ranked:
            raise Conflict(f"no compute provider can run this job: {placement.explain()}", code="no_provider")
        best = placement.ranked[0]
        job_id = uuid.uuid4().hex
        expires = datetime.now(UTC) + timedelta(seconds=self._settings.quote_ttl_s)
        quote = {
            "job_id": job_id,
            "compute_provider": {"peer_id": best.candidate.peer_id, "payment_addr": best.candidate.payment_addr},
            "estimated_price": best.price,
            "expires_at": expires.isoformat(),
            # With escrow the deposit names one provider: a refusal ends the job (and refunds) instead.
            "candidates": [[x.candidate.peer_id, x.price] for x in placement.ranked[: self._attempts()]],
            **self._payments.quote_fields(job_id),
        }
        # The payment report may follow at once: the stream to the provider opens meanwhile (closed if stale),
        # unless AHEAD_PER_PROVIDER quotes placed there are already that recent (each holds a stream a while).
        now, peer = time.monotonic(), best.candidate.peer_id
        recent = sum(1 for p in self._placed.values() if p.peer == peer and now - p.at < OPENED_FRESH_S)
        opening = open_ahead(self._deps.dialer, peer) if recent < AHEAD_PER_PROVIDER else None
        # Counted at once, before the row is stored: requests placed meanwhile (a burst) see it.
        self._placed[job_id] = Placed(peer, r.cpu_mhz, r.memory_mb, now)
        self._quoting.add(job_id)
        try:
            await self._jobs.create(
                job_id=job_id, state=SPState.AWAITING_PAYMENT.value, spec=spec.model_dump(), quote=quote, cp_seq=0
            )
        except BaseException:
            self._placed.pop(job_id, None)
            if opening is not None:
                await close_opened(opening)
            raise
        finally:
            self._quoting.discard(job_id)
        self._feed.fresh(job_id)
        self._own(job_id, opening)  # it waits for the payment, or expires the quote at expires_at
        log.info("quoted job %s: %s for %s wei", job_id, best.candidate.peer_id, best.price)
        return quote

    async def _needs(self, spec: JobSpec, target_peer: str | None) -> Needs:
        r = spec.resources
        return Needs(
            channel=await self._channel(), cpu_mhz=r.cpu_mhz, cores=r.cores, memory_mb=r.memory_mb,
            duration_s=spec.duration_s, max_price=spec.max_price, gpus=r.gpus, vram_mb=r.vram_mb,
            gpu_vendor=r.gpu_vendor, disk_mb=r.disk_mb, target_peer=target_peer, escrow=self._payments.escrow,
            executor=spec.executor, max_rtt_ms=spec.max_rtt_ms, preferred_rtt_ms=spec.preferred_rtt_ms,
        )  # fmt: skip

    async def _replacements(self, spec: JobSpec, gone: frozenset[str]) -> list[tuple[str, int, str]]:
        """Providers that could take over a lost job's run, best first (resume after loss, sp_resume.py)."""
        ranked = place(self._candidates(), await self._needs(spec, None)).ranked
        fit = [
            (x.candidate.peer_id, x.price, x.candidate.payment_addr) for x in ranked if x.candidate.peer_id not in gone
        ]
        return fit[: self._settings.max_attempts]

    def _minus_in_flight(self, candidates: list[Candidate]) -> list[Candidate]:
        """Providers' advertised free capacity less what this SP placed there that their adverts cannot show
        yet (quotes being paid, jobs being dispatched), so a burst of requests spreads over the providers."""
        used: dict[str, tuple[int, int]] = {}
        now = time.monotonic()
        for job_id, p in list(self._placed.items()):
            owner = self._owners.get(job_id)
            state = owner.state if owner is not None else SPState.QUOTED if job_id in self._quoting else None
            if state is None or state.is_terminal() or state == SPState.RUNNING:
                del self._placed[job_id]  # ended, or admitted and running: the provider's advert counts it
                continue
            if state in (SPState.QUOTED, SPState.AWAITING_PAYMENT) and now - p.at > PLACEMENT_HOLD_S:
                continue  # an unpaid quote holds nothing for long
            cpu, mem = used.get(p.peer, (0, 0))
            used[p.peer] = (cpu + p.cpu_mhz, mem + p.memory_mb)
        return [
            dataclasses.replace(
                c, cpu_mhz=max(c.cpu_mhz - used[c.peer_id][0], 0), memory_mb=max(c.memory_mb - used[c.peer_id][1], 0)
            )
            if c.peer_id in used
            else c
            for c in candidates
        ]

    def _attempts(self) -> int:
        return 1 if self._payments.escrow else self._settings.max_attempts

    async def awaiting_payment(self) -> list[str]:
        return [r.job_id for r in await self._jobs.list({SPState.AWAITING_PAYMENT.value}, limit=None)]

    async def send_status(self, job_id: str, status: str, tx_hash: str | None) -> None:
        """The dashboard reports its payment. `success` dispatches; `pending` keeps waiting.
        Conflict when the job is not (or no longer) awaiting payment, or a payment is already being checked."""
        owner = await self._live_owner(job_id, "is not awaiting payment")
        await owner.ask(Pay(status, tx_hash))

    async def cancel(self, job_id: str) -> None:
        """Cancel the job, or ask its provider to stop it; Conflict once it has ended."""
        owner = await self._live_owner(job_id, "already ended")
        await owner.ask(CancelJob())

    async def _row(self, job_id: str) -> SPJobRow:
        row = await self._jobs.get(job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row

    async def get(self, job_id: str) -> SPJobRow:
        return await self._row(job_id)

    async def list(self) -> list[SPJobRow]:
        return await self._jobs.list()

    # --- frames to dashboards -------------------------------------------------------------------

    async def frames(self, job_id: str, after: int = 0) -> AsyncIterator[tuple[int, Frame]]:
        """Every frame of the job after `after`, stored then live, until its final frame."""
        await self._row(job_id)
        async with contextlib.aclosing(self._feed.follow(job_id, after)) as items:
            async for item in items:
                assert item is not None  # no idle timeout asked
                yield item.seq, item.data
                if item.data["action"] in ("job-completed", "job-failed"):
                    return
