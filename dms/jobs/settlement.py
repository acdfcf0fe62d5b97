"""The settlement outbox's worker: sends each pending release or refund until it is mined or refused for good.

A job's owner writes the pending settlement in the same transaction as the job's final state (and its
final frame), so a crash cannot lose it; this worker is then the only writer of that row. It retries with
back-off, across restarts (pending rows are retried at once after a start), and records every attempt.

New settlements wait for a quiet moment: until none has come for `QUIET_S`, at most `MAX_QUIET_WAIT_S`.
A release costs the SP more CPU than the job's whole dispatch (a transaction built, signed, sent and
followed), and nothing waits on it but the provider's pay; during a burst of jobs ending one after
another, sending them at once would take that CPU from the jobs still starting (bench/RESULTS.md,
"Escrow in a burst"). A lone job's settlement goes `QUIET_S` after its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import UTC, datetime, timedelta

from dms.jobs.transport import NetworkError
from dms.payments.errors import SettlementError
from dms.payments.gate import PaymentGate
from dms.payments.settle import Outcome
from dms.store.jobs import TransactionLog
from dms.store.models import TransactionRow

log = logging.getLogger(__name__)

QUIET_S = 1.0
MAX_QUIET_WAIT_S = 10.0
FIRST_RETRY_S = 1.0
LAST_RETRY_S = 300.0
FOR_GOOD = ("wrong_state", "not_allowed")
"""SettlementError codes that no retry can change (the escrow is settled the other way, not ours to settle)."""


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4, ... up to 5 minutes."""
    return min(FIRST_RETRY_S * float(2 ** max(attempts - 1, 0)), LAST_RETRY_S)


def quiet_left(now: float, last_new: float, until: float) -> float:
    """Pure: seconds still to wait before settling, QUIET_S after the last new settlement (`last_new`) but not
    past `until`; 0 when it is time."""
    return max(min(last_new + QUIET_S, until) - now, 0.0)


class SettlementWorker:
    def __init__(self, transactions: TransactionLog, payments: PaymentGate) -> None:
        self._log = transactions
        self._payments = payments
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_new = -math.inf
        """When the last new settlement came (loop time)."""

    async def start(self) -> None:
        retried = await self._log.retry_now()
        if retried:
            log.info("retrying %d pending settlements", retried)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kick(self) -> None:
        """A new settlement is pending: look once things are quiet."""
        self._last_new = asyncio.get_running_loop().time()
        self._wake.set()

    async def _quiet(self) -> None:
        """Until no new settlement has come for QUIET_S, at most MAX_QUIET_WAIT_S from now."""
        loop = asyncio.get_running_loop()
        until = loop.time() + MAX_QUIET_WAIT_S
        # A deadline that each new settlement moves on, not an event to wait for:
        while left := quiet_left(loop.time(), self._last_new, until):  # noqa: ASYNC110
            await asyncio.sleep(left)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self._quiet()
            try:
                for row in await self._log.due():
                    await self._attempt(row)
                nxt = await self._log.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store or the chain misbehaving must not end the worker
                log.exception("settlement worker: unexpected error; retrying")
                nxt = datetime.now(UTC) + timedelta(seconds=FIRST_RETRY_S)
            wait = None if nxt is None else max((nxt - datetime.now(UTC)).total_seconds(), 0.0)
            if wait == 0.0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _attempt(self, row: TransactionRow) -> None:
        outcome = Outcome(row.outcome or "")
        try:
            _action, tx = await self._payments.settle(row.job_id, outcome, lambda tx: self._log.sent(row.id, tx))
        except (SettlementError, NetworkError, OSError) as exc:
            code = exc.code if isinstance(exc, SettlementError) else "failed"
            n = row.attempts + 1
            if code in FOR_GOOD:
                log.warning("job %s: %s refused for good: %s", row.job_id, row.kind, exc)
                await self._log.attempted(row.id, "failed", None, f"attempt {n}: {exc}", None)
                return
            wait = backoff(n)
            log.warning("job %s: %s attempt %d failed (%s); retrying in %g s", row.job_id, row.kind, n, exc, wait)
            error = f"attempt {n}: {exc}; retrying in {wait:g} s"
            await self._log.attempted(row.id, "pending", None, error, datetime.now(UTC) + timedelta(seconds=wait))
            return
        note = None if tx else "already settled on-chain"
        await self._log.attempted(row.id, "mined", tx, note, None)
        log.info("job %s: %s (%s) mined: %s", row.job_id, row.kind, outcome, tx)
