"""Persistence of jobs (one table per side) and their numbered events.

Each job row has one writer: the SP rows the requester service, the CP rows the provider service.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from dms.store.db import Store
from dms.store.direct import Table
from dms.store.models import CPJobRow, JobEventRow, SPJobRow, TransactionRow

Side = Literal["sp", "cp"]
Row = TypeVar("Row", SPJobRow, CPJobRow)


def now() -> datetime:
    return datetime.now(UTC)


class Duplicate(Exception):
    """A value that must be unique (a job id, a deposit's tx hash) is already stored."""


class Stale(Exception):
    """A compare-and-set found the job in another state than the writer expected (or no such job)."""


@dataclass(frozen=True)
class NewEvent:
    """An event to store with a job's change, numbered by the job's owner."""

    side: Side
    seq: int
    kind: str
    payload: dict[str, Any]


class JobStore(Generic[Row]):
    """Rows of one side's jobs. State moves are compare-and-set (`commit`), checked by the caller's state machine."""

    def __init__(self, store: Store, model: type[Row]) -> None:
        self._store = store
        self._model: type[Row] = model

    def _t(self) -> Table[Row]:
        return self._store.table(self._model)

    def check_space(self) -> None:
        """OSError(ENOSPC) when the store's disk is (nearly) full: see Store.check_space."""
        self._store.check_space()

    async def create(self, events: Sequence[NewEvent] = (), **values: Any) -> None:
        """The job's row, with its first `events` in the same transaction. Raises Duplicate when the job id or
        the tx hash is taken (nothing written)."""
        t, ev, at = self._t(), self._store.table(JobEventRow), now()

        def write(c: sqlite3.Connection) -> None:
            t.insert(c, {**values, "created_at": at, "updated_at": at})
            ev.insert_many(
                c, ({"side": e.side, "job_id": values["job_id"], "seq": e.seq, "kind": e.kind, "payload": e.payload,
                     "at": at} for e in events),
            )  # fmt: skip

        try:
            await self._store.direct.write(write)
        except sqlite3.IntegrityError as exc:
            raise Duplicate(str(exc)) from exc

    async def get(self, job_id: str) -> Row | None:
        t = self._t()
        rows = await self._store.direct.peek(lambda c: t.select(c, "WHERE job_id = ?", (job_id,)))
        return rows[0] if rows else None

    async def update(self, job_id: str, **values: Any) -> Row:
        """Raises KeyError for an unknown job, Duplicate when a unique value (tx hash) is taken."""
        try:
            async with self._store.session() as s, s.begin():
                row = await s.get(self._model, job_id)
                if row is None:
                    raise KeyError(job_id)
                for k, v in values.items():
                    setattr(row, k, v)
                row.updated_at = now()
                return row
        except IntegrityError as exc:
            raise Duplicate(str(exc.orig)) from exc

    async def commit(
        self,
        job_id: str,
        expected: str | None,
        events: Sequence[NewEvent] = (),
        also: Sequence[TransactionRow] = (),
        **values: Any,
    ) -> None:
        """One transaction: set `values` if the job is still in state `expected` (any state when None), and
        store `events` (and `also`, e.g. the settlement it now owes) with it. Raises Stale (nothing written)
        when the state moved, Duplicate when a unique value (tx hash, an event number) is taken."""
        t, ev, tx, at = self._t(), self._store.table(JobEventRow), self._store.table(TransactionRow), now()
        sets = t.encode({**values, "updated_at": at})
        sql = f"UPDATE {t.name} SET {', '.join(f'{k} = :{k}' for k in sets)} WHERE job_id = :_job_id"
        if expected is not None:
            sql += " AND state = :_expected"
        params = {**sets, "_job_id": job_id, "_expected": expected}

        def write(c: sqlite3.Connection) -> None:
            if c.execute(sql, params).rowcount != 1:
                raise Stale(f"job {job_id} is no longer {expected}")
            ev.insert_many(
                c, ({"side": e.side, "job_id": job_id, "seq": e.seq, "kind": e.kind, "payload": e.payload, "at": at}
                    for e in events),
            )  # fmt: skip
            tx.insert_many(c, (tx.values_of(row) for row in also))

        try:
            await self._store.direct.write(write)
        except sqlite3.IntegrityError as exc:
            raise Duplicate(str(exc)) from exc

    async def list(self, states: set[str] | None = None, limit: int | None = 200) -> list[Row]:
        """Newest first; `limit=None` for all of them (recovery must see every live job)."""
        q = select(self._model).order_by(self._model.created_at.desc()).limit(limit)
        if states is not None:
            q = q.where(self._model.state.in_(states))
        async with self._store.session() as s:
            return list((await s.execute(q)).scalars())


class EventLog:
    """Append-only, numbered events per (side, job). Numbers start at 1 and never repeat."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, side: Side, job_id: str, seq: int, kind: str, payload: dict[str, Any]) -> None:
        """Store one event under the number its job's owner gave it (sqlite3.IntegrityError if it is taken)."""
        t = self._store.table(JobEventRow)
        row = {"side": side, "job_id": job_id, "seq": seq, "kind": kind, "payload": payload, "at": now()}
        await self._store.direct.write(lambda c: t.insert(c, row))

    async def last_seq(self, side: Side, job_id: str) -> int:
        """The job's highest stored number (0 if none): where its owner resumes numbering."""
        sql = "SELECT max(seq) FROM job_events WHERE side = ? AND job_id = ?"
        last = await self._store.direct.peek(lambda c: c.execute(sql, (side, job_id)).fetchone()[0])
        return int(last or 0)

    async def after(self, side: Side, job_id: str, seq: int) -> list[JobEventRow]:
        t = self._store.table(JobEventRow)
        where = "WHERE side = ? AND job_id = ? AND seq > ? ORDER BY seq"
        return await self._store.direct.read(lambda c: t.select(c, where, (side, job_id, seq)))

    async def trim(self, side: Side, job_id: str, kind: str, keep: int) -> int:
        """Forget the oldest `kind` events of a job beyond the newest `keep`; how many went."""
        newest = (
            select(JobEventRow.id)
            .where(JobEventRow.side == side, JobEventRow.job_id == job_id, JobEventRow.kind == kind)
            .order_by(JobEventRow.seq.desc())
            .limit(keep)
        )
        async with self._store.session() as s, s.begin():
            result = await s.execute(
                delete(JobEventRow).where(
                    JobEventRow.side == side,
                    JobEventRow.job_id == job_id,
                    JobEventRow.kind == kind,
                    JobEventRow.id.not_in(newest),
                )
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def prune(self, older_than: timedelta) -> int:
        """Forget events older than `older_than` (finished jobs' buffers are kept at least that long)."""
        async with self._store.session() as s, s.begin():
            result = await s.execute(delete(JobEventRow).where(JobEventRow.at < now() - older_than))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


OPEN = ("pending", "sent")
"""Settlement states the worker still owns: not yet mined, not refused for good."""


class TransactionLog:
    """Payments per job, newest first when listed."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(
        self, job_id: str, kind: str, tx_hash: str | None, amount: int | None, state: str, error: str | None = None
    ) -> None:
        async with self._store.session() as s, s.begin():
            s.add(TransactionLog.record(job_id, kind, tx_hash, amount, state, error))

    @staticmethod
    def record(
        job_id: str, kind: str, tx_hash: str | None, amount: int | None, state: str, error: str | None = None
    ) -> TransactionRow:
        """A payment record, to store with a job's move (JobStore.commit's `also`) or alone (`add`)."""
        return TransactionRow(
            job_id=job_id, kind=kind, tx_hash=tx_hash, amount=None if amount is None else str(amount), state=state,
            error=error, at=now(), attempts=0,
        )  # fmt: skip

    @staticmethod
    def owed(job_id: str, action: str, outcome: str) -> TransactionRow:
        """A pending release or refund, to store with the job's final state (JobStore.commit's `also`)."""
        at = now()
        return TransactionRow(
            job_id=job_id, kind=action, tx_hash=None, amount=None, state="pending", error=None, at=at,
            outcome=outcome, attempts=0, next_at=at,
        )  # fmt: skip

    async def due(self, limit: int = 50) -> list[TransactionRow]:
        """Pending settlements whose next attempt is due, oldest first."""
        q = (
            select(TransactionRow)
            .where(TransactionRow.state.in_(OPEN), TransactionRow.next_at <= now())
            .order_by(TransactionRow.next_at)
            .limit(limit)
        )
        async with self._store.session() as s:
            return list((await s.execute(q)).scalars())

    async def next_due(self) -> datetime | None:
        q = select(func.min(TransactionRow.next_at)).where(TransactionRow.state.in_(OPEN))
        async with self._store.session() as s:
            value = await s.scalar(q)
        return None if value is None else value.replace(tzinfo=UTC)

    async def retry_now(self) -> int:
        """Make every pending settlement due (at start: a restart is a good moment to try again)."""
        q = update(TransactionRow).where(TransactionRow.state.in_(OPEN)).values(next_at=now())
        async with self._store.session() as s, s.begin():
            return int((await s.execute(q)).rowcount or 0)  # type: ignore[attr-defined]

    async def attempted(
        self, row_id: int, state: str, tx_hash: str | None, error: str | None, next_at: datetime | None
    ) -> None:
        """Record one attempt of a pending settlement: its new state, and when to try again if still pending.
        Without a `tx_hash` the one already recorded stays: a broadcast transaction may still be mined."""
        q = (
            update(TransactionRow)
            .where(TransactionRow.id == row_id, TransactionRow.state.in_(OPEN))
            .values(state=state, tx_hash=TransactionRow.tx_hash if tx_hash is None else tx_hash, error=error,
                    next_at=next_at, at=now(), attempts=TransactionRow.attempts + 1)
        )  # fmt: skip
        async with self._store.session() as s, s.begin():
            await s.execute(q)

    async def sent(self, row_id: int, tx_hash: str) -> None:
        """A pending settlement's transaction is broadcast; its receipt is awaited."""
        q = (
            update(TransactionRow)
            .where(TransactionRow.id == row_id, TransactionRow.state.in_(OPEN))
            .values(state="sent", tx_hash=tx_hash, at=now())
        )
        async with self._store.session() as s, s.begin():
            await s.execute(q)

    async def list(self, limit: int = 500) -> list[TransactionRow]:
        async with self._store.session() as s:
            q = select(TransactionRow).order_by(TransactionRow.id.desc()).limit(limit)
            return list((await s.execute(q)).scalars())
