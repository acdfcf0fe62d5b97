"""The service provider's side of a job: quote, wait for payment, dispatch, follow, report to dashboards.

What dashboards see are frames in NuNet's shapes (`job-submitted`, `deployment-response`,
`log-stream-response`, `job-failed`, `job-completed`). Each frame is stored as a numbered event before it
is delivered, so a dashboard that reconnects and subscribes again gets the whole story, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dms.errors import Conflict, NotFound
from dms.jobs.feed import EventFeed
from dms.jobs.protocol import (
    PROTOCOL,
    Accepted,
    Attach,
    Cancel,
    Deploy,
    End,
    Event,
    Heartbeat,
    Payment,
    ProtocolError,
    Rejected,
    decode_to_requester,
    encode,
)
from dms.jobs.spec import JobSpec
from dms.jobs.states import SPState, transition
from dms.jobs.tasks import cancel_and_wait
from dms.jobs.transport import Dialer, LineStream, NetworkError, StreamClosed
from dms.matching import Candidate, Needs, place
from dms.payments.errors import PaymentRejected, SettlementError
from dms.payments.gate import PaymentGate
from dms.payments.settle import Outcome, outcome_of
from dms.store.jobs import Duplicate, EventLog, JobStore, TransactionLog
from dms.store.models import SPJobRow

log = logging.getLogger(__name__)

OutputsHook = Callable[[str, str, Any], Awaitable[dict[str, Any] | None]]
"""(job id, provider's peer id, the outputs it reported) → what the job's end frame shows (dms.artifacts)."""

ANSWER_TIMEOUT_S = 15.0
Frame = dict[str, Any]


@dataclass(frozen=True)
class RequesterSettings:
    heartbeat_s: float
    quote_ttl_s: float = 600.0
    max_attempts: int = 3


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
        on_outputs: OutputsHook | None = None,
        on_checkpoint: Callable[[str, str, dict[str, Any]], None] | None = None,
        latest_checkpoint: Callable[[str], tuple[int, str] | None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._events = events
        self._candidates = candidates
        self._channel = channel
        self._dialer = dialer
        self._settings = settings
        self._payments = payments
        self._transactions = transactions
        self._on_outputs = on_outputs
        self._on_checkpoint = on_checkpoint
        self._latest_checkpoint = latest_checkpoint
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._streams: dict[str, LineStream] = {}
        self._feed = EventFeed(events, "sp")

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Pick up jobs that were in flight when the daemon stopped: dispatch the paid, follow the running."""
        live = {SPState.AWAITING_PAYMENT.value, SPState.PAID.value, SPState.SUBMITTED.value, SPState.RUNNING.value}
        for row in await self._jobs.list(live):
            if row.state == SPState.AWAITING_PAYMENT.value and row.tx_hash is None:
                continue  # still waiting for the dashboard's send-status
            log.info("resuming job %s (%s)", row.job_id, row.state)
            self._spawn(row.job_id)

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks.values())

    # --- quote and payment ----------------------------------------------------------------------

    async def request_service(self, spec: JobSpec, target_peer: str | None) -> dict[str, Any]:
        """Choose a provider and return the quote; NotFound-like Conflict when nobody fits."""
        placement = place(self._candidates(), await self._needs(spec, target_peer))
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
        await self._jobs.create(
            job_id=job_id, state=SPState.AWAITING_PAYMENT.value, spec=spec.model_dump(), quote=quote, cp_seq=0
        )
        log.info("quoted job %s: %s for %s wei", job_id, best.candidate.peer_id, best.price)
        return quote

    async def _needs(self, spec: JobSpec, target_peer: str | None) -> Needs:
        r = spec.resources
        return Needs(
            channel=await self._channel(), cpu_mhz=r.cpu_mhz, cores=r.cores, memory_mb=r.memory_mb,
            duration_s=spec.duration_s, max_price=spec.max_price, gpus=r.gpus, vram_mb=r.vram_mb,
            gpu_vendor=r.gpu_vendor, target_peer=target_peer,
        )  # fmt: skip

    def _attempts(self) -> int:
        return 1 if self._payments.escrow else self._settings.max_attempts

    async def awaiting_payment(self) -> list[str]:
        return [r.job_id for r in await self._jobs.list({SPState.AWAITING_PAYMENT.value})]

    async def send_status(self, job_id: str, status: str, tx_hash: str | None) -> None:
        """The dashboard reports its payment. `success` dispatches; `pending` keeps waiting."""
        row = await self._row(job_id)
        if row.state != SPState.AWAITING_PAYMENT.value:
            raise Conflict(f"job {job_id} is not awaiting payment (it is {row.state})", code="wrong_state")
        if datetime.fromisoformat(row.quote["expires_at"]) < datetime.now(UTC):
            await self._end(row.job_id, SPState.FAILED, "the quote expired; request a new one", None)
            raise Conflict(f"the quote for job {job_id} expired; request a new one", code="quote_expired")
        if self._payments.escrow and not tx_hash:
            why = "send-status needs message.tx_hash: this node verifies escrow deposits on-chain"
            raise Conflict(why, code="tx_hash_required")
        # Without escrow "pending" waits for a later "success"; with it, the chain decides (and is waited for).
        if job_id in self._tasks or (status == "pending" and not self._payments.escrow):
            return
        try:
            await self._jobs.update(job_id, tx_hash=tx_hash.lower() if tx_hash else None)
        except Duplicate:
            reused = "payment rejected: reused (that deposit paid for another job)"
            await self._end(job_id, SPState.FAILED, reused, None)
            return
        self._spawn(job_id)

    async def cancel(self, job_id: str) -> None:
        row = await self._row(job_id)
        state = SPState(row.state)
        if state.is_terminal():
            raise Conflict(f"job {job_id} already ended ({row.state})", code="wrong_state")
        if state in (SPState.SUBMITTED, SPState.RUNNING) and row.cp_peer_id:
            await self._send_cancel(job_id, row.cp_peer_id)
            return
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
        await self._end(job_id, SPState.CANCELLED, "cancelled", None)

    async def _send_cancel(self, job_id: str, peer: str) -> None:
        stream = self._streams.get(job_id)
        msg = encode(Cancel(type="cancel", job_id=job_id))
        try:
            if stream is not None:
                await stream.send(msg)
                return
            side = await self._dialer.open(peer, PROTOCOL)
            try:
                await side.send(msg)
            finally:
                await side.close()
        except NetworkError as exc:
            raise Conflict(f"cannot reach the provider to cancel job {job_id}: {exc}", code="unreachable") from exc

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

    async def _frame(self, job_id: str, frame: Frame) -> None:
        await self._feed.emit(job_id, "frame", frame)

    async def frames(self, job_id: str, after: int = 0) -> AsyncIterator[tuple[int, Frame]]:
        """Every frame of the job after `after`, stored then live, until its final frame."""
        await self._row(job_id)
        async with contextlib.aclosing(self._feed.follow(job_id, after)) as items:
            async for item in items:
                assert item is not None  # no idle timeout asked
                yield item.seq, item.data
                if item.data["action"] in ("job-completed", "job-failed"):
                    return

    # --- dispatch and follow --------------------------------------------------------------------

    def _spawn(self, job_id: str) -> None:
        task = asyncio.create_task(self._drive(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None) if self._tasks.get(job_id) is task else None)

    async def _drive(self, job_id: str) -> None:
        try:
            row = await self._row(job_id)
            if row.state == SPState.AWAITING_PAYMENT.value:
                if not await self._check_payment(row):
                    return
                row = await self._row(job_id)
            if row.state == SPState.PAID.value:
                stream = await self._dispatch(row)
            else:
                stream = await self._reattach(row)
            if stream is not None:
                await self._follow(job_id, stream)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: unexpected error", job_id)
            with contextlib.suppress(Exception):
                await self._end(job_id, SPState.FAILED, "internal error in the service provider", None)
        finally:
            stream = self._streams.pop(job_id, None)
            if stream is not None:
                await stream.close()

    async def _check_payment(self, row: SPJobRow) -> bool:
        """Verify the deposit (escrow mode) and move to PAID; job-failed with the reason otherwise."""
        q = row.quote
        try:
            tx = await self._payments.verify(
                row.tx_hash, row.job_id, q["compute_provider"]["payment_addr"], q["estimated_price"], q.get("arbiter")
            )
        except PaymentRejected as exc:
            await self._transactions.add(row.job_id, "fund", row.tx_hash, q["estimated_price"], "rejected", str(exc))
            await self._end(row.job_id, SPState.FAILED, f"payment rejected: {exc.reason}", None, settle=False)
            return False
        if self._payments.escrow:
            await self._transactions.add(row.job_id, "fund", tx, q["estimated_price"], "verified")
        await self._jobs.update(row.job_id, state=transition(SPState.AWAITING_PAYMENT, SPState.PAID).value)
        return True

    async def _dispatch(self, row: SPJobRow) -> LineStream | None:
        """Offer the job to the quoted provider, then to the next candidates (bounded)."""
        await self._frame(row.job_id, {"action": "job-submitted"})
        spec = JobSpec.model_validate(row.spec)
        refusals = []
        for peer, price in row.quote["candidates"]:
            payment = Payment(price=price, tx_hash=row.tx_hash, arbiter=row.quote.get("arbiter"))
            deploy = Deploy(type="deploy", job_id=row.job_id, spec=spec, payment=payment)
            try:
                stream = await self._dialer.open(peer, PROTOCOL)
            except NetworkError as exc:
                refusals.append(f"{peer}: unreachable ({exc})")
                continue
            answer = await self._offer(stream, deploy)
            if isinstance(answer, Accepted):
                await self._jobs.update(row.job_id, state=SPState.SUBMITTED.value, cp_peer_id=peer)
                content = f"job {row.job_id} deployed to {peer}"
                await self._frame(
                    row.job_id, {"action": "deployment-response", "message": {"success": True, "content": content}}
                )
                self._streams[row.job_id] = stream
                return stream
            await stream.close()
            refusals.append(f"{peer}: {answer}")
        reason = "no compute provider accepted the job: " + "; ".join(refusals)
        await self._frame(
            row.job_id, {"action": "deployment-response", "message": {"success": False, "content": reason}}
        )
        await self._end(row.job_id, SPState.FAILED, reason, None)
        return None

    async def _offer(self, stream: LineStream, deploy: Deploy) -> Accepted | str:
        """The provider's answer: Accepted, or the refusal as a sentence."""
        try:
            await stream.send(encode(deploy))
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while True:
                msg = decode_to_requester(await stream.receive(max(deadline - time.monotonic(), 0.01)))
                if isinstance(msg, Accepted | Rejected) and msg.job_id == deploy.job_id:
                    return msg if isinstance(msg, Accepted) else msg.reason
        except TimeoutError:
            return "no answer"
        except StreamClosed as exc:
            return f"stream closed ({exc})"
        except ProtocolError as exc:
            return f"bad answer ({exc})"

    async def _reattach(self, row: SPJobRow) -> LineStream | None:
        """A new stream to the job's provider, resuming after the last event seen; None if it is lost."""
        deadline = time.monotonic() + 3 * self._settings.heartbeat_s
        reason = "unknown"
        assert row.cp_peer_id is not None
        while time.monotonic() < deadline:
            try:
                stream = await self._dialer.open(row.cp_peer_id, PROTOCOL)
            except NetworkError as exc:
                reason = str(exc)
                await asyncio.sleep(self._settings.heartbeat_s / 2)
                continue
            try:
                await stream.send(encode(Attach(type="attach", job_id=row.job_id, after_seq=row.cp_seq)))
                msg = decode_to_requester(await stream.receive(ANSWER_TIMEOUT_S))
            except (StreamClosed, TimeoutError, ProtocolError) as exc:
                await stream.close()
                reason = str(exc) or type(exc).__name__
                continue
            if isinstance(msg, Accepted):
                self._streams[row.job_id] = stream
                return stream
            await stream.close()
            reason = msg.reason if isinstance(msg, Rejected) else "unexpected answer"
            break
        return await self._lost(row.job_id, f"compute provider lost: {reason}")

    async def _follow(self, job_id: str, stream: LineStream) -> None:
        """Relay the provider's events until the result; re-attach once the stream drops, within the bound."""
        while True:
            try:
                msg = decode_to_requester(await stream.receive(3 * self._settings.heartbeat_s))
            except TimeoutError:
                silent = 3 * self._settings.heartbeat_s
                self._streams.pop(job_id, None)
                await stream.close()
                next_stream = await self._lost(job_id, f"compute provider lost: silent for {silent:g} s")
                if next_stream is None:
                    return
                stream = next_stream
                continue
            except ProtocolError as exc:
                log.warning("job %s: bad message from the provider: %s", job_id, exc)
                continue
            except StreamClosed:
                self._streams.pop(job_id, None)
                await stream.close()
                next_stream = await self._reattach(await self._row(job_id))
                if next_stream is None:
                    return
                stream = next_stream
                continue
            if isinstance(msg, Heartbeat):
                continue
            if isinstance(msg, End):
                return
            if isinstance(msg, Event) and msg.job_id == job_id and await self._on_event(job_id, msg):
                return

    async def _lost(self, job_id: str, reason: str) -> LineStream | None:
        """The provider is gone: a job that asked `resume: on-failure` runs on another provider from its
        latest checkpoint, on the same job id (payment mode none: with escrow a new run needs its own
        deposit, which is not asked for yet); any other job fails with `reason`."""
        row = await self._row(job_id)
        spec = JobSpec.model_validate(row.spec)
        if spec.resume == "on-failure" and not self._payments.escrow and row.cp_peer_id:
            stream = await self._resume_elsewhere(row, spec, reason)
            if stream is not None:
                return stream
            reason += "; no other provider took it over"
        await self._end(job_id, SPState.FAILED, reason, None)
        return None

    async def _resume_elsewhere(self, row: SPJobRow, spec: JobSpec, reason: str) -> LineStream | None:
        runs: list[dict[str, Any]] = row.quote.get("runs") or [{"run": 1, "compute_provider": row.cp_peer_id}]
        gone = {r["compute_provider"] for r in runs}
        latest = self._latest_checkpoint(row.job_id) if self._latest_checkpoint else None
        if latest is not None and spec.checkpoint is not None:
            spec = spec.model_copy(update={"restore": latest[1]})
        ranked = place(self._candidates(), await self._needs(spec, None)).ranked
        for x in [x for x in ranked if x.candidate.peer_id not in gone][: self._settings.max_attempts]:
            peer = x.candidate.peer_id
            deploy = Deploy(type="deploy", job_id=row.job_id, spec=spec, payment=Payment(price=x.price))
            try:
                stream = await self._dialer.open(peer, PROTOCOL)
            except NetworkError:
                continue
            if not isinstance(await self._offer(stream, deploy), Accepted):
                await stream.close()
                continue
            run = {"run": len(runs) + 1, "compute_provider": peer, "checkpoint": latest[0] if latest else None}
            await self._jobs.update(row.job_id, cp_peer_id=peer, cp_seq=0, quote={**row.quote, "runs": [*runs, run]})
            self._streams[row.job_id] = stream
            detail = {**run, "reason": reason}
            await self._frame(row.job_id, {"action": "job-resumed", "detail": detail})
            log.info("job %s resumed on %s: %s", row.job_id, peer, run)
            return stream
        return None

    async def _on_event(self, job_id: str, ev: Event) -> bool:
        """Apply one provider event; True once the job has ended."""
        row = await self._row(job_id)
        if ev.seq <= row.cp_seq:
            return False
        await self._jobs.update(job_id, cp_seq=ev.seq)
        if ev.kind == "logs":
            message = {"stdout": ev.data.get("stdout", ""), "stderr": ev.data.get("stderr", "")}
            await self._frame(job_id, {"action": "log-stream-response", "message": message})
        elif ev.kind == "status" and ev.data.get("state") == "running" and row.state == SPState.SUBMITTED.value:
            await self._jobs.update(job_id, state=transition(SPState.SUBMITTED, SPState.RUNNING).value)
        elif ev.kind == "checkpoint" and self._on_checkpoint is not None and row.cp_peer_id:
            self._on_checkpoint(job_id, row.cp_peer_id, ev.data)  # fetched in the background
        elif ev.kind == "result":
            state = {"completed": SPState.COMPLETED, "cancelled": SPState.CANCELLED}.get(
                str(ev.data.get("state")), SPState.FAILED
            )
            code = ev.data.get("exit_code")
            outputs = None
            if self._on_outputs is not None and "outputs" in ev.data and row.cp_peer_id:  # fetched before the end
                outputs = await self._on_outputs(job_id, row.cp_peer_id, ev.data["outputs"])
            await self._end(
                job_id, state, ev.data.get("reason"), code if isinstance(code, int) else None, outputs=outputs
            )
            return True
        return False

    async def _settle(self, job_id: str, outcome: Outcome) -> None:
        """Release or refund by the table; the result is recorded either way (and logged on failure)."""
        try:
            action, tx = await self._payments.settle(job_id, outcome)
        except (SettlementError, NetworkError, OSError) as exc:
            log.warning("job %s: settlement failed: %s", job_id, exc)
            await self._transactions.add(job_id, "settle", None, None, "failed", str(exc))
            return
        await self._transactions.add(job_id, action, tx, None, "sent" if tx else "already settled")
        log.info("job %s: %s (%s) sent: %s", job_id, action, outcome, tx)

    async def _end(
        self, job_id: str, state: SPState, reason: str | None, code: int | None, *, settle: bool = True,
        outputs: dict[str, Any] | None = None,
    ) -> None:
        row = await self._row(job_id)
        was = SPState(row.state)
        transition(was, state)
        await self._jobs.update(job_id, state=state.value, reason=reason, exit_code=code)
        if settle and self._payments.escrow and row.tx_hash and was != SPState.AWAITING_PAYMENT:
            lost = (reason or "").startswith("compute provider lost")
            started = was == SPState.RUNNING or state == SPState.COMPLETED
            await self._settle(job_id, outcome_of(state.value, container_started=started, provider_lost=lost))
        extra = {"outputs": outputs} if outputs else {}
        if state == SPState.COMPLETED:
            await self._frame(job_id, {"action": "job-completed", "detail": {"exit_code": code, **extra}})
        else:
            why = reason or state.value
            detail: dict[str, Any] = {"reason": why, **extra}
            if code is not None:
                detail["exit_code"] = code
            await self._frame(job_id, {"action": "job-failed", "message": why, "detail": detail})
        log.info("job %s %s%s", job_id, state.value, f": {reason}" if reason else "")
