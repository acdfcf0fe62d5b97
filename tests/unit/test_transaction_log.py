"""The settlement outbox on a real SQLite file: a failed retry of a broadcast settlement keeps its tx hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dms.store.db import Store
from dms.store.jobs import TransactionLog


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
