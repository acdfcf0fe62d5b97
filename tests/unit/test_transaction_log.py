"""The settlement outbox on a real SQLite file: a failed retry of a broadcast settlement keeps its tx hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dms.store.db import Store
from dms.store.jobs import Duplicate, JobStore, TransactionLog
from dms.store.models import SPJobRow


async def test_a_retry_after_a_broadcast_keeps_the_tx_hash(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        log = TransactionLog(store)
        async with store.session() as s, s.begin():
            s.add(TransactionLog.owed("job-1", "release", "completed"))
        (row,) = await log.due()
        await log.sent(row.id, "0x" + "ab" * 32)
        await log.attempted(row.id, "pending", None, "receipt not found", datetime.now(UTC) + timedelta(seconds=5))
        (after,) = [t for t in await log.list() if t.id == row.id]
        assert after.state == "pending" and after.error == "receipt not found"
        assert after.tx_hash == "0x" + "ab" * 32
        assert after.attempts == 1
    finally:
        await store.close()


async def test_a_verified_deposit_is_recorded_with_its_move_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        jobs, log = JobStore(store, SPJobRow), TransactionLog(store)
        for job_id in ("a", "b"):
            await jobs.create(job_id=job_id, state="awaiting_payment", spec={}, quote={}, cp_seq=0)
        funded = TransactionLog.record("a", "fund", "0x" + "cd" * 32, 5, "verified")
        await jobs.commit("a", "awaiting_payment", (), [funded], state="paid", tx_hash="0x" + "cd" * 32)
        (row,) = await log.list()
        assert (row.job_id, row.kind, row.state, row.amount, row.attempts) == ("a", "fund", "verified", "5", 0)
        # The same deposit for another job: the move and its record are refused together.
        again = TransactionLog.record("b", "fund", "0x" + "cd" * 32, 5, "verified")
        with pytest.raises(Duplicate):
            await jobs.commit("b", "awaiting_payment", (), [again], state="paid", tx_hash="0x" + "cd" * 32)
        assert [t.job_id for t in await log.list()] == ["a"]
        assert (await jobs.get("b")).state == "awaiting_payment"  # type: ignore[union-attr]
    finally:
        await store.close()
