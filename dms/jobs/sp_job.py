"""The one writer of a job on the service provider's side.

One `SPJob` task per live job owns its row, its frame numbers and its side effects (payment check,
dispatch, settlement). REST and websocket handlers only submit commands (`Pay`, `CancelJob`) and wait for
the answer; the helpers it starts (payment check, offer, the provider link) only send it messages. Every
change is one transaction, compare-and-set on the state it expects, with the dashboard frames it makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dms.errors import Conflict
from dms.jobs.deadline import min_refund_deadline
from dms.jobs.feed import Numbered
from dms.jobs.link import Ahead, FromProvider, Lost, Opening, ProviderLink, offer
from dms.jobs.protocol import FIRST_LINE_TIMEOUT_S, Deploy, Event, Payment
from dms.jobs.sp_deps import Deps
from dms.jobs.sp_files import OutputsFetched, fetch_outputs
from dms.jobs.sp_messages import CancelJob, Frame, Offered, Pay, Verified, answer, final_frame, log_frames
from dms.jobs.sp_rerun import Resuming
from dms.jobs.sp_resume import NotResumed, Resumed, ResumeQuoted, RunClock, run_number, run_spec, runs_of
from dms.jobs.states import SPState, transition
from dms.jobs.transport import LineStream, NetworkError
from dms.payments.contract import run_key
from dms.payments.errors import PaymentRejected
from dms.payments.settle import outcome_of, settlement
from dms.store.health import storage_fault
from dms.store.jobs import Duplicate, NewEvent, TransactionLog
from dms.store.models import SPJobRow, TransactionRow

__all__ = ["Deps", "SPJob"]

log = logging.getLogger(__name__)

OPENED_FRESH_S = FIRST_LINE_TIMEOUT_S / 2
"""A stream opened ahead is used only this long: its provider waits FIRST_LINE_TIMEOUT_S for the request."""


class SPJob(Resuming):
    def __init__(self, job_id: str, deps: Deps, opening: Opening | None = None) -> None:
        self.job_id = job_id
        self._d = deps
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self.state = SPState.QUOTED
        self._row: SPJobRow | None = None
        self._helper: asyncio.Task[None] | None = None
        self._link: ProviderLink | None = None
        self._paying: str | None = None  # the tx hash being verified
        self._cancel_wanted = False
        self._started = False  # the provider reported the container running
        self._result_in = False  # the provider's result came; its outputs are being fetched
        self._clock = RunClock()  # how far the current run got by each checkpoint (resume in escrow mode)
        self._closed = False  # the loop has ended: commands are refused from now on
        self._ahead = Ahead(deps.dialer, OPENED_FRESH_S, opening)  # the first provider's stream, opened ahead

    @property
    def provider_peer(self) -> str | None:
        """The provider the job was dispatched to (None before dispatch)."""
        return self._row.cp_peer_id if self._row is not None else None

    def submit(self, msg: object) -> None:
        self._inbox.put_nowait(msg)

    async def ask(self, cmd: Pay | CancelJob) -> None:
        """Submit a command and wait for its answer (a Conflict saying why it was refused)."""
        if self._closed:  # the owner is gone (its service forgets it a moment later)
            answer(cmd, self._refusal(cmd))
        else:
            self.submit(cmd)
        await cmd.done

    # --- the owner's loop -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            row = await self._d.jobs.get(self.job_id)
            assert row is not None
            self._row, self.state = row, SPState(row.state)
            self._started = self.state == SPState.RUNNING
            self._resume(row)
            while not self.state.is_terminal():
                msg = await self._next()
                try:
                    await self._handle(msg)
                except Conflict as exc:
                    answer(msg, exc)
                except Exception as exc:
                    if storage_fault(exc) is None:
                        answer(msg, Conflict(f"job {self.job_id}: internal error in the service provider"))
                        raise
                    # The disk is full: nothing was stored, the asker is told, the job waits for space.
                    log.warning("job %s: %s", self.job_id, storage_fault(exc))
                    answer(msg, exc)
                    if isinstance(msg, Verified):
                        self._paying = None  # the payment can be reported again once there is room
                answer(msg, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: unexpected error", self.job_id)
            if not self.state.is_terminal():
                with contextlib.suppress(Exception):
                    await self._end(SPState.FAILED, "internal error in the service provider", None)
        finally:
            await self._close_helpers()
            self._refuse_rest()
            self._d.feed.forget(self.job_id)

    def _resume(self, row: SPJobRow) -> None:
        if self.state == SPState.PAID:
            self._start_helper(self._dispatch(row))
        elif self.state in (SPState.SUBMITTED, SPState.RUNNING) and row.cp_peer_id:
            self._follow(row.cp_peer_id, None, row.cp_seq)

    async def _next(self) -> object:
        """The next message; None when the quote expires while waiting for payment. A stream opened ahead
        at the quote is closed once stale, while the payment is awaited."""
        while self.state in (SPState.QUOTED, SPState.AWAITING_PAYMENT) and self._paying is None:
            left = (self._expires() - datetime.now(UTC)).total_seconds()
            stale_in = self._ahead.stale_in()
            wait = left if stale_in is None else min(left, stale_in)
            try:
                return await asyncio.wait_for(self._inbox.get(), max(wait, 0.0))
            except TimeoutError:
                if stale_in is None or stale_in > left:
                    return None
                await self._ahead.close()
        return await self._inbox.get()

    def _expires(self) -> datetime:
        assert self._row is not None
        return datetime.fromisoformat(self._row.quote["expires_at"])

    async def _handle(self, msg: object) -> None:
        if msg is None:
            await self._end(SPState.FAILED, self._expired(), None, settle=False)
        elif isinstance(msg, Pay):
            await self._pay(msg)
        elif isinstance(msg, CancelJob):
            await self._cancel()
        elif isinstance(msg, Verified):
            await self._verified(msg)
        elif isinstance(msg, Offered):
            await self._offered(msg)
        elif isinstance(msg, FromProvider):
            await self._on_event(msg.event)
        elif isinstance(msg, OutputsFetched):
            await self._on_result(msg.result, msg.outputs)
        elif isinstance(msg, Lost) and not self._result_in:
            await self._lost(f"compute provider lost: {msg.reason}")
        elif isinstance(msg, Resumed):
            await self._resumed(msg)
        elif isinstance(msg, ResumeQuoted):
            await self._resume_quoted(msg)
        elif isinstance(msg, NotResumed):
            await self._end(SPState.FAILED, msg.reason, None)

    def _refuse_rest(self) -> None:
        """Answer what is still queued once the job ended (or the service stops); refuse what comes later."""
        self._closed = True
        while not self._inbox.empty():
            msg = self._inbox.get_nowait()
            if isinstance(msg, Offered) and msg.stream is not None:
                asyncio.create_task(msg.stream.close())  # noqa: RUF006 - close() never raises
            answer(msg, self._refusal(msg))

    def _refusal(self, msg: object) -> Conflict:
        if not self.state.is_terminal():
            return Conflict("the service provider is stopping; try again after its restart", code="stopping")
        what = "is not awaiting payment" if isinstance(msg, Pay) else "already ended"
        return Conflict(f"job {self.job_id} {what} (it is {self.state.value})", code="wrong_state")

    # --- commands -------------------------------------------------------------------------------

    async def _pay(self, cmd: Pay) -> None:
        if self.state not in (SPState.QUOTED, SPState.AWAITING_PAYMENT):
            raise Conflict(f"job {self.job_id} is not awaiting payment (it is {self.state.value})", code="wrong_state")
        if self._paying is not None:
            raise Conflict(f"job {self.job_id}: a payment is already being checked", code="wrong_state")
        if self._expires() < datetime.now(UTC):
            await self._end(SPState.FAILED, self._expired(), None, settle=False)
            raise Conflict(f"the quote for job {self.job_id} expired; request a new one", code="quote_expired")
        if self._d.payments.escrow and not cmd.tx_hash:
            why = "send-status needs message.tx_hash: this node verifies escrow deposits on-chain"
            raise Conflict(why, code="tx_hash_required")
        if cmd.status == "pending" and not self._d.payments.escrow:
            return  # without escrow "pending" waits for a later "success"; with it, the chain decides
        self._d.jobs.check_space()  # the payment's outcome must be stored: refuse it now if it cannot be
        self._paying = cmd.tx_hash.lower() if cmd.tx_hash else ""
        self._start_helper(self._verify(self._paying))
        candidates = self._row.quote["candidates"] if self._row is not None else []
        if candidates:  # opened (unless it was at the quote) while the payment is checked and stored
            self._ahead.open(candidates[0][0])

    async def _cancel(self) -> None:
        if self.state in (SPState.QUOTED, SPState.AWAITING_PAYMENT):
            await self._close_helpers()  # a payment check only reads
            await self._end(SPState.CANCELLED, "cancelled", None)
        elif self.state == SPState.PAID or self._link is None:
            self._cancel_wanted = True  # an offer (or a resume) is out: its answer decides (cancel if accepted)
        elif self._link is not None:
            try:
                await self._link.cancel()
            except NetworkError as exc:
                raise Conflict(
                    f"cannot reach the provider to cancel job {self.job_id}: {exc}", code="unreachable"
                ) from exc

    # --- helpers' results -----------------------------------------------------------------------

    async def _verified(self, msg: Verified) -> None:
        assert self._row is not None and self._paying is not None
        q, tx_hash = self._row.quote, self._paying
        self._paying = None
        if msg.error is not None:
            if isinstance(msg.error, PaymentRejected):
                await self._d.transactions.add(
                    self.job_id, "fund", tx_hash or None, q["estimated_price"], "rejected", str(msg.error)
                )
                reason = f"payment rejected: {msg.error.reason}"
            else:
                reason = f"payment could not be checked: {msg.error}"
            await self._end(SPState.FAILED, reason, None, settle=False)
            return
        transition(self.state, SPState.PAID)
        submitted = await self._frames({"action": "job-submitted"})
        key = run_key(self.job_id, run_number(self._row))
        funded = [TransactionLog.record(key, "fund", msg.tx, q["estimated_price"], "verified")]
        funded = funded if self._d.payments.escrow else []
        try:  # the deposit is marked used only now, once verified for this job; its record goes with the move
            await self._commit(SPState.PAID, submitted, funded, tx_hash=tx_hash or None)
        except Duplicate:
            reused = "payment rejected: reused (that deposit paid for another job)"
            await self._end(SPState.FAILED, reused, None, settle=False)
            return
        self._row.tx_hash = tx_hash or None
        self._start_helper(self._dispatch(self._row))

    async def _offered(self, msg: Offered) -> None:
        if msg.stream is None or msg.peer is None:
            reason = "no compute provider accepted the job: " + "; ".join(msg.refusals)
            frame = {"action": "deployment-response", "message": {"success": False, "content": reason}}
            if self._cancel_wanted:
                await self._end(SPState.CANCELLED, "cancelled", None, before=[frame])
            else:
                await self._end(SPState.FAILED, reason, None, before=[frame])
            return
        content = f"job {self.job_id} deployed to {msg.peer}"
        shown: list[Frame] = [{"action": "deployment-response", "message": {"success": True, "content": content}}]
        assert self._row is not None
        quote = self._row.quote
        if "pending_run" in quote:  # a run that resumes the job (escrow mode): its deposit was verified
            pending = quote["pending_run"]
            shown.append({"action": "job-resumed", "detail": pending})
            quote = {k: v for k, v in quote.items() if k != "pending_run"}
            quote["runs"] = [*runs_of(self._row), {k: v for k, v in pending.items() if k != "reason"}]
        transition(self.state, SPState.SUBMITTED)
        await self._commit(SPState.SUBMITTED, await self._frames(*shown), cp_peer_id=msg.peer, quote=quote)
        self._row.cp_peer_id, self._row.quote = msg.peer, quote
        self._follow(msg.peer, msg.stream, 0)
        if self._cancel_wanted and self._link is not None:
            with contextlib.suppress(NetworkError):
                await self._link.cancel()

    async def _on_event(self, ev: Event) -> None:
        files, peer = self._d.files, self._row.cp_peer_id if self._row else None
        if ev.kind == "result":
            if files is not None and peer and "outputs" in ev.data:  # fetched by a helper before the end
                self._result_in = True
                self._start_helper(fetch_outputs(files, self.job_id, peer, ev, self.submit))
            else:
                await self._on_result(ev, None)
            return
        if ev.kind == "checkpoint" and files is not None and peer:
            files.on_checkpoint(self.job_id, peer, ev.data)  # fetched in the background, kept in its own record
            self._clock.checkpoint(ev.data)
        new = self.state
        frames: list[Numbered] = []
        if ev.kind == "logs":
            frames = await self._frames(*log_frames(str(ev.data.get("stdout", "")), str(ev.data.get("stderr", ""))))
        elif ev.kind == "status" and ev.data.get("state") == "running" and self.state == SPState.SUBMITTED:
            new = transition(self.state, SPState.RUNNING)
            self._started = True
            self._clock.started(ev.data.get("at"))
        elif ev.kind == "status":
            # Nothing to store (no frame, no move; `admitted`, `starting`): its number goes with the next move,
            # and after a crash the provider sends it again, which again changes nothing.
            return
        await self._commit(new, frames, cp_seq=ev.seq)

    async def _on_result(self, ev: Event, outputs: dict[str, Any] | None) -> None:
        state = {"completed": SPState.COMPLETED, "cancelled": SPState.CANCELLED}.get(
            str(ev.data.get("state")), SPState.FAILED
        )
        code = ev.data.get("exit_code")
        reason = ev.data.get("reason")
        await self._end(state, reason if isinstance(reason, str) else None, code if isinstance(code, int) else None,
                        cp_seq=ev.seq, outputs=outputs)  # fmt: skip

    # --- writing --------------------------------------------------------------------------------

    async def _frames(self, *frames: Frame) -> list[Numbered]:
        return [Numbered(await self._d.feed.number(self.job_id), "frame", f) for f in frames]

    async def _commit(
        self, new: SPState, frames: list[Numbered], also: Sequence[TransactionRow] = (), **values: Any
    ) -> None:
        """Store the move from the current state (compare-and-set), the values and the frames together;
        then hand the frames to the dashboards."""
        events = [NewEvent("sp", f.seq, f.kind, f.data) for f in frames]
        await self._d.jobs.commit(self.job_id, self.state.value, events, also, state=new.value, **values)
        self.state = new
        for f in frames:
            self._d.feed.publish(self.job_id, f)

    async def _end(
        self, state: SPState, reason: str | None, code: int | None, *, settle: bool = True,
        before: list[Frame] | None = None, outputs: dict[str, Any] | None = None, **values: Any,
    ) -> None:  # fmt: skip
        """The final move, its frames and the settlement it owes (escrow), in one transaction; the settlement
        worker sends the release or refund after that, so the final frame never waits for the chain."""
        was = self.state
        transition(was, state)
        frames = await self._frames(*(before or []), final_frame(state, reason, code, outputs))
        owed = self._owed(state, reason) if settle else []
        await self._commit(state, frames, also=owed, reason=reason, exit_code=code, **values)
        log.info("job %s %s%s", self.job_id, state.value, f": {reason}" if reason else "")
        if owed:
            self._d.settlements_due()

    def _owed(self, state: SPState, reason: str | None) -> list[TransactionRow]:
        """The release or refund the current run's deposit is owed when it ends in `state` (escrow mode,
        paid runs only), under the run's own escrow key."""
        tx_hash = self._row.tx_hash if self._row else None
        if not self._d.payments.escrow or not tx_hash or self.state in (SPState.QUOTED, SPState.AWAITING_PAYMENT):
            return []
        assert self._row is not None
        lost = (reason or "").startswith("compute provider lost")
        started = self._started or state == SPState.COMPLETED
        outcome = outcome_of(state.value, container_started=started, provider_lost=lost)
        key = run_key(self.job_id, run_number(self._row))
        return [TransactionLog.owed(key, settlement(outcome).value, outcome.value)]

    # --- helpers (they only read and send, and report back as messages) --------------------------

    def _start_helper(self, work: Any) -> None:
        self._helper = asyncio.create_task(work)

    def _follow(self, peer: str, stream: LineStream | None, after: int) -> None:
        self._link = ProviderLink(self.job_id, peer, self._d.dialer, self._d.heartbeat_s, self.submit)
        self._link.start(stream, after)

    async def _close_helpers(self) -> None:
        await self._ahead.close()  # not taken by the offer: the payment failed, or the job ended
        if self._helper is not None and not self._helper.done():
            self._helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._helper
        self._helper = None
        self._paying = None if self.state not in (SPState.QUOTED, SPState.AWAITING_PAYMENT) else self._paying
        if self._link is not None:
            await self._link.close()
            self._link = None

    async def _verify(self, tx_hash: str) -> None:
        assert self._row is not None
        q = self._row.quote
        try:
            tx = await self._d.payments.verify(
                tx_hash or None, run_key(self.job_id, run_number(self._row)), q["compute_provider"]["payment_addr"],
                q["estimated_price"], q.get("arbiter"),
                min_refund_deadline(run_spec(self._row).duration_s, time.time()),
            )  # fmt: skip
        except Exception as exc:  # the owner turns any failure into the job's reason
            self.submit(Verified(None, exc))
            return
        self.submit(Verified(tx, None))

    async def _dispatch(self, row: SPJobRow) -> None:
        """Offer the job to the quoted provider, then to the next candidates (bounded)."""
        spec = run_spec(row)
        refusals = []
        opening = await self._ahead.take()
        for i, (peer, price) in enumerate(row.quote["candidates"]):
            payment = Payment(price=price, tx_hash=row.tx_hash, arbiter=row.quote.get("arbiter"), run=run_number(row))
            deploy = Deploy(type="deploy", job_id=self.job_id, spec=spec, payment=payment)
            answer = await offer(self._d.dialer, peer, deploy, self._d.modules, opening if i == 0 else None)
            if not isinstance(answer, str):
                self.submit(Offered(answer, peer, ()))
                return
            refusals.append(f"{peer}: {answer}")
        self.submit(Offered(None, None, tuple(refusals)))
