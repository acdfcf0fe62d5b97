"""The store's fast path (dms/store/direct.py) on a real SQLite file: it writes what SQLAlchemy writes and reads
what SQLAlchemy wrote, its compare-and-set and uniqueness hold, a failed transaction leaves nothing, and a
committed one survives a SIGKILL of the process that wrote it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from asyncio.subprocess import PIPE
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from dms.onboarding.record import Onboarding
from dms.onboarding.rules import Resources
from dms.store.allocations import AllocationStore
from dms.store.db import Store
from dms.store.jobs import Duplicate, EventLog, JobStore, NewEvent, Stale, TransactionLog
from dms.store.models import CPJobRow, JobEventRow, SPJobRow, TransactionRow
from dms.store.onboarding import OnboardingStore

SPEC = {"image": "x", "env": {"K": "é"}, "resources": {"cpu_mhz": 100, "cores": 0.5}}


async def test_both_paths_read_and_write_the_same_values(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        jobs = JobStore(store, SPJobRow)
        await jobs.create(job_id="a", state="awaiting_payment", spec=SPEC, quote={"price": 10**30})
        # Written by the fast path, read through SQLAlchemy: the same types and values.
        async with store.session() as s:
            orm = await s.get(SPJobRow, "a")
            assert orm is not None
            assert orm.spec == SPEC and orm.quote == {"price": 10**30} and orm.cp_seq == 0  # column default
            assert orm.created_at.tzinfo == UTC and orm.tx_hash is None
            raw = (await s.execute(text("SELECT created_at, spec FROM sp_jobs"))).one()
        # Written by SQLAlchemy, read by the fast path.
        at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        async with store.session() as s, s.begin():
            s.add(SPJobRow(job_id="b", state="paid", spec=SPEC, quote={}, cp_seq=7, created_at=at, updated_at=at))
        b = await jobs.get("b")
        assert b is not None and (b.state, b.spec, b.cp_seq, b.created_at) == ("paid", SPEC, 7, at)
        async with store.session() as s:
            raw_b = (await s.execute(text("SELECT created_at, spec FROM sp_jobs WHERE job_id = 'b'"))).one()
        stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
        assert stamp.fullmatch(raw[0]) and stamp.fullmatch(raw_b[0]) and raw[1] == raw_b[1]  # the same texts
        assert await jobs.get("nope") is None

        # The onboarding record and the allocations, both ways.
        rec = Onboarding("nunet-test", "0x" + "1" * 40, 5, Resources(1000, 512, (0,), 10), True, at, at)
        await OnboardingStore(store).put(rec)
        assert await OnboardingStore(store).get() == rec
        allocations = AllocationStore(store)
        await allocations.hold("a", Resources(100, 32, (0,), 5))
        await allocations.hold("b", Resources(50, 16, (), 0))
        assert await allocations.held() == Resources(150, 48, (0,), 5)
        assert await allocations.count() == 2
        await allocations.release("a")
        assert await allocations.held() == Resources(50, 16, (), 0)
    finally:
        await store.close()


async def test_a_state_move_is_compare_and_set_and_all_or_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        jobs, events = JobStore(store, CPJobRow), EventLog(store)
        await jobs.create(job_id="j", sp_peer_id="p", state="admitted", spec=SPEC)
        with pytest.raises(Duplicate):
            await jobs.create(job_id="j", sp_peer_id="p", state="admitted", spec=SPEC)
        await jobs.commit("j", "admitted", [NewEvent("cp", 1, "status", {"state": "starting"})], state="starting")
        # Stale: the job is not in the expected state; nothing of the move is stored.
        with pytest.raises(Stale):
            await jobs.commit("j", "admitted", [NewEvent("cp", 2, "status", {"state": "x"})], state="running")
        # Duplicate: an event number taken; the state move with it is rolled back too.
        owed = TransactionLog.owed("j", "release", "completed")
        with pytest.raises(Duplicate):
            await jobs.commit("j", "starting", [NewEvent("cp", 1, "status", {})], [owed], state="running")
        row = await jobs.get("j")
        assert row is not None and row.state == "starting"
        assert [(e.seq, e.payload) for e in await events.after("cp", "j", 0)] == [(1, {"state": "starting"})]
        assert await TransactionLog(store).list() == []
        # A final move with the settlement it owes: both stored, read back through SQLAlchemy.
        await jobs.commit("j", "starting", [NewEvent("cp", 2, "result", {"state": "completed"})], [owed],
                          state="completed", exit_code=0)  # fmt: skip
        async with store.session() as s:
            (tx,) = (await s.execute(select(TransactionRow))).scalars()
            assert (tx.job_id, tx.kind, tx.state, tx.attempts) == ("j", "release", "pending", 0)
            assert tx.next_at is not None and tx.next_at.tzinfo == UTC
            kinds = (await s.execute(select(JobEventRow.kind).order_by(JobEventRow.seq))).scalars().all()
        assert kinds == ["status", "result"] and await events.last_seq("cp", "j") == 2
        assert await events.last_seq("sp", "j") == 0
        with pytest.raises(Stale):
            await jobs.commit("missing", None, state="x")
    finally:
        await store.close()


WRITER = """
import asyncio, os, sys
from asyncio.subprocess import PIPE
from pathlib import Path
from dms.store.db import Store
from dms.store.jobs import EventLog, JobStore, NewEvent
from dms.store.models import CPJobRow

async def main() -> None:
    store = Store(Path(sys.argv[1]))
    await store.open()
    jobs = JobStore(store, CPJobRow)
    await jobs.create(job_id="j", sp_peer_id="p", state="admitted", spec={})
    for i in range(1, 51):
        await jobs.commit("j", None, [NewEvent("cp", i, "logs", {"i": i})], exit_code=i)
    print("committed", flush=True)
    await asyncio.Event().wait()  # killed here, the store never closed

asyncio.run(main())
"""


async def test_a_committed_transaction_survives_a_sigkill(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(tmp_path), stdout=PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"committed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    store = Store(tmp_path)
    await store.open()
    try:
        row = await JobStore(store, CPJobRow).get("j")
        assert row is not None and row.exit_code == 50
        assert await EventLog(store).last_seq("cp", "j") == 50
    finally:
        await store.close()


async def test_a_row_is_created_with_its_first_events_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        jobs, events = JobStore(store, CPJobRow), EventLog(store)
        first = [NewEvent("cp", 1, "status", {"state": "admitted"})]
        await jobs.create(first, job_id="a", sp_peer_id="p", state="admitted", spec=SPEC, tx_hash="0x1")
        assert [(e.seq, e.kind, e.payload) for e in await events.after("cp", "a", 0)] == [
            (1, "status", {"state": "admitted"})
        ]
        with pytest.raises(Duplicate):  # the tx hash is taken: neither the row nor its event is stored
            await jobs.create(first, job_id="b", sp_peer_id="p", state="admitted", spec=SPEC, tx_hash="0x1")
        assert await jobs.get("b") is None and await events.after("cp", "b", 0) == []
    finally:
        await store.close()


async def test_point_reads_on_the_loop_see_every_committed_write_and_write_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        jobs = JobStore(store, SPJobRow)
        for i in range(30):
            await jobs.create(job_id=f"j{i}", state="awaiting_payment", spec=SPEC, quote={})
            assert (row := await jobs.get(f"j{i}")) is not None and row.state == "awaiting_payment"
            await jobs.commit(f"j{i}", "awaiting_payment", state="paid")
            assert (row := await jobs.get(f"j{i}")) is not None and row.state == "paid"
        table = store.table(SPJobRow).name
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # the loop's connection only reads
            await store.direct.peek(lambda c: c.execute(f"DELETE FROM {table}"))
        assert len([r for i in range(30) if (r := await jobs.get(f"j{i}")) is not None]) == 30
    finally:
        await store.close()
