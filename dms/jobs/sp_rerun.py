"""The moves of a job's owner (`sp_job.SPJob`) when its provider is lost and the job resumes elsewhere
(docs/artifacts.md, "Resume after a provider's loss"): kept apart from the owner's main steps. The helpers
they start live in `sp_resume.py`; these methods run in the owner's task and are its only writes here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dms.jobs.feed import Numbered
from dms.jobs.sp_messages import Frame
from dms.jobs.sp_resume import (
    NotResumed,
    Resumed,
    ResumeQuoted,
    RunClock,
    next_run,
    quote_elsewhere,
    resume_elsewhere,
    resume_quote,
    resume_quote_frame,
    run_number,
    runs_of,
)
from dms.jobs.states import SPState, transition
from dms.jobs.transport import LineStream, NetworkError
from dms.payments.contract import run_key
from dms.store.models import SPJobRow, TransactionRow

if TYPE_CHECKING:
    from dms.jobs.link import ProviderLink
    from dms.jobs.sp_deps import Deps

__all__ = ["NotResumed", "Resuming"]

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What these moves use of the owner."""

    job_id: str
    state: SPState
    _row: SPJobRow | None
    _d: Deps
    _link: ProviderLink | None
    _clock: RunClock
    _started: bool
    _cancel_wanted: bool

    def submit(self, msg: object) -> None: ...
    def _start_helper(self, work: Any) -> None: ...
    def _follow(self, peer: str, stream: LineStream | None, after: int) -> None: ...
    def _owed(self, state: SPState, reason: str | None) -> list[TransactionRow]: ...
    async def _frames(self, *frames: Frame) -> list[Numbered]: ...
    async def _commit(
        self, new: SPState, frames: list[Numbered], also: Sequence[TransactionRow] = (), **values: Any
    ) -> None: ...
    async def _end(
        self, state: SPState, reason: str | None, code: int | None, *, settle: bool = True,
        before: list[Frame] | None = None, outputs: dict[str, Any] | None = None, **values: Any,
    ) -> None: ...  # fmt: skip


class Resuming:
    """Mixed into `SPJob`."""

    _link: ProviderLink | None

    async def _lost(self: Owner, reason: str) -> None:
        """A job that asked `resume: on-failure` runs again elsewhere from its latest checkpoint (a helper
        looks for a provider; in escrow mode the new run is quoted and paid for first); any other job fails
        with `reason`."""
        row, d = self._row, self._d
        may = row is not None and row.cp_peer_id and row.spec.get("resume") == "on-failure"
        if row is None or not may or d.replacements is None or d.files is None:
            await self._end(SPState.FAILED, reason, None)
            return
        if self._link is not None:
            await self._link.close()
            self._link = None
        latest = d.files.latest_checkpoint
        if d.payments.escrow:
            spec, checkpoint = next_run(row, latest, self._clock)
            self._start_helper(quote_elsewhere(row, spec, checkpoint, reason, d.replacements, self.submit))
            return
        self._start_helper(resume_elsewhere(row, reason, d.dialer, d.replacements, latest, self.submit, d.modules))

    async def _resume_quoted(self: Owner, msg: ResumeQuoted) -> None:
        """Escrow mode: the lost run is settled (CP lost: refund), and the dashboard is asked for the next
        run's deposit under its own escrow job id (`job-resume-quote`); the job waits for it (or the quote
        expires) as for a first payment, and is dispatched once it is verified."""
        assert self._row is not None
        d = self._d
        if self._cancel_wanted:  # cancelled while a provider was being looked for: the lost run is refunded
            await self._end(SPState.CANCELLED, f"{msg.reason}; cancelled before it resumed", None)
            return
        expires = (datetime.now(UTC) + timedelta(seconds=d.quote_ttl_s)).isoformat()
        quote = resume_quote(self._row, msg, d.payments.quote_fields(run_key(self.job_id, run_number(self._row) + 1)),
                             expires)  # fmt: skip
        owed = self._owed(SPState.FAILED, msg.reason)
        transition(self.state, SPState.AWAITING_PAYMENT)
        await self._commit(SPState.AWAITING_PAYMENT, await self._frames(resume_quote_frame(quote)), also=owed,
                           cp_seq=0, quote=quote)  # fmt: skip
        self._row.quote, self._started = quote, False
        log.info("job %s: run %d quoted on %s, waiting for its deposit", self.job_id, quote["run"], msg.peer)
        if owed:
            d.settlements_due()

    def _expired(self: Owner) -> str:
        if self._row is not None and run_number(self._row) > 1:
            n = run_number(self._row)
            return f"the quote for run {n} (to resume the job after its provider was lost) expired unpaid"
        return "the quote expired; request a new one"

    async def _resumed(self: Owner, msg: Resumed) -> None:
        """The new provider took the job over: it is the job's provider from now on (its events numbered
        afresh), the run is kept in the quote's `runs`, and dashboards get a `job-resumed` frame."""
        assert self._row is not None
        quote = {**self._row.quote, "runs": [*runs_of(self._row), msg.run]}
        frames = await self._frames({"action": "job-resumed", "detail": {**msg.run, "reason": msg.reason}})
        await self._commit(self.state, frames, cp_peer_id=msg.peer, cp_seq=0, quote=quote)
        self._row.cp_peer_id, self._row.quote = msg.peer, quote
        log.info("job %s resumed on %s: %s", self.job_id, msg.peer, msg.run)
        self._follow(msg.peer, msg.stream, 0)
        if self._cancel_wanted and self._link is not None:  # cancelled while it was being resumed
            with contextlib.suppress(NetworkError):
                await self._link.cancel()
