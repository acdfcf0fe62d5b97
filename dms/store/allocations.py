"""The ledger of resources held by admitted jobs, out of the node's reservation."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from dms.onboarding.rules import Resources
from dms.store.db import Store
from dms.store.models import AllocationRow


class AllocationStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def held(self) -> Resources:
        """The sum of what every admitted, unfinished job holds."""
        t = self._store.table(AllocationRow)
        rows = await self._store.direct.peek(lambda c: t.select(c))
        return Resources(
            cpu_mhz=sum(r.cpu_mhz for r in rows),
            memory_mb=sum(r.memory_mb for r in rows),
            disk_mb=sum(r.disk_mb for r in rows),
            gpus=tuple(sorted({g for r in rows for g in r.gpus})),
        )

    async def count(self) -> int:
        async with self._store.session() as s:
            return len((await s.execute(select(AllocationRow.job_id))).all())

    async def hold(self, job_id: str, amount: Resources) -> None:
        t = self._store.table(AllocationRow)
        row = {
            "job_id": job_id, "cpu_mhz": amount.cpu_mhz, "memory_mb": amount.memory_mb, "disk_mb": amount.disk_mb,
            "gpus": list(amount.gpus), "created_at": datetime.now(UTC),
        }  # fmt: skip
        await self._store.direct.write(lambda c: t.insert(c, row))

    async def release(self, job_id: str) -> None:
        await self._store.direct.write(lambda c: c.execute("DELETE FROM allocations WHERE job_id = ?", (job_id,)))
