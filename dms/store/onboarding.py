"""Persistence of the onboarding record (one row)."""

from __future__ import annotations

import sqlite3

from dms.onboarding.record import Onboarding
from dms.onboarding.rules import Resources
from dms.store.db import Store
from dms.store.models import OnboardingRow

ROW_ID = 1


class OnboardingStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self) -> Onboarding | None:
        t = self._store.table(OnboardingRow)
        rows = await self._store.direct.peek(lambda c: t.select(c, "WHERE id = ?", (ROW_ID,)))
        return _to_record(rows[0]) if rows else None

    async def put(self, rec: Onboarding) -> None:
        """Create or replace the record, in one transaction (a write transaction from its start: it never has
        to upgrade a read to a write while a job's transaction commits)."""
        t = self._store.table(OnboardingRow)
        row = {
            "id": ROW_ID, "channel": rec.channel, "payment_addr": rec.payment_addr, "ntx_price": rec.ntx_price,
            "cpu_mhz": rec.reserved.cpu_mhz, "memory_mb": rec.reserved.memory_mb, "disk_mb": rec.reserved.disk_mb,
            "gpus": list(rec.reserved.gpus), "is_available": rec.is_available, "onboarded_at": rec.onboarded_at,
            "updated_at": rec.updated_at,
        }  # fmt: skip

        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM onboarding WHERE id = ?", (ROW_ID,))
            t.insert(c, row)

        await self._store.direct.write(write)

    async def delete(self) -> bool:
        return await self._store.direct.write(lambda c: c.execute("DELETE FROM onboarding").rowcount > 0)


def _to_record(row: OnboardingRow) -> Onboarding:
    return Onboarding(
        channel=row.channel,
        payment_addr=row.payment_addr,
        ntx_price=row.ntx_price,
        reserved=Resources(row.cpu_mhz, row.memory_mb, tuple(row.gpus), row.disk_mb),
        is_available=row.is_available,
        onboarded_at=row.onboarded_at,
        updated_at=row.updated_at,
    )
