"""Onboarding: the provider's choices (reservation, channel, price, payout address, availability).

The store is the source of truth; the metadata file is a rendering of it, rewritten after every change
and at start, so the two cannot drift apart for longer than a crash.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dms.errors import Conflict, FieldProblem, InvalidInput
from dms.onboarding import metadata, wallet
from dms.onboarding.record import Onboarding
from dms.onboarding.rules import (
    Provisioned,
    Resources,
    check_not_below_held,
    check_reservation,
    default_disk_mb,
)
from dms.store.allocations import AllocationStore
from dms.store.onboarding import OnboardingStore

log = logging.getLogger(__name__)

MAX_PRICE = 2**63 - 1


class OnboardingService:
    def __init__(
        self,
        machine: Provisioned,
        records: OnboardingStore,
        allocations: AllocationStore,
        metadata_path: Path,
        channels: Sequence[str],
        version: str,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.machine = machine
        self.metadata_path = metadata_path
        self._records = records
        self._allocations = allocations
        self._channels = list(channels)
        self._version = version
        self._lock = asyncio.Lock()
        self._on_change = on_change

    def ledger(self) -> asyncio.Lock:
        """The one lock over free capacity: onboarding changes here, and the provider's admission (check and
        hold) and release, all take it, so none interleaves with another and free never goes below zero."""
        return self._lock

    async def start(self) -> None:
        """Re-render the metadata file from the store (it may be missing or stale after a crash)."""
        rec = await self._records.get()
        if rec is not None and rec.reserved.disk_mb == 0:  # onboarded before disk was reserved
            rec = replace(rec, reserved=replace(rec.reserved, disk_mb=default_disk_mb(self.machine)))
            await self._records.put(rec)
            log.info("reserved the default disk share: %s MB", rec.reserved.disk_mb)
        await self._render(rec)

    async def get(self) -> Onboarding | None:
        return await self._records.get()

    async def require(self) -> Onboarding:
        rec = await self._records.get()
        if rec is None:
            raise Conflict("this machine is not onboarded; onboard it first (nunet onboard)", code="not_onboarded")
        return rec

    async def free(self) -> Resources:
        """What the reservation still offers after what jobs hold; nothing when not onboarded."""
        rec = await self._records.get()
        if rec is None:
            return Resources()
        return rec.reserved.minus(await self._allocations.held())

    async def onboard(
        self, *, reserved: Resources, channel: str, payment_addr: str, ntx_price: int, is_available: bool
    ) -> Onboarding:
        """Onboard, or onboard again with new settings (NuNet's CLI does that: it asks, then onboards again);
        a new reservation may not go below what running jobs hold."""
        problems = check_reservation(self.machine, reserved)
        problems += self._check_terms(channel, payment_addr, ntx_price)
        if problems:
            raise InvalidInput.of(problems)
        async with self._lock:
            old = await self._records.get()
            if old is not None:
                below = check_not_below_held(reserved, await self._allocations.held())
                if below:
                    raise InvalidInput.of(below)
            now = datetime.now(UTC)
            since = now if old is None else old.onboarded_at
            addr = wallet.normal_payout(payment_addr)
            rec = Onboarding(channel, addr, ntx_price, reserved, is_available, since, now)
            await self._save(rec)
        log.info("onboarded: %s MHz, %s MB, channel %s", reserved.cpu_mhz, reserved.memory_mb, channel)
        return rec

    async def resource_config(
        self,
        *,
        cpu_mhz: int | None,
        memory_mb: int | None,
        gpus: Sequence[int] | None,
        disk_mb: int | None = None,
    ) -> Onboarding:
        async with self._lock:
            rec = await self.require()
            wanted = Resources(
                rec.reserved.cpu_mhz if cpu_mhz is None else cpu_mhz,
                rec.reserved.memory_mb if memory_mb is None else memory_mb,
                rec.reserved.gpus if gpus is None else tuple(gpus),
                rec.reserved.disk_mb if disk_mb is None else disk_mb,
            )
            problems = check_reservation(self.machine, wanted)
            problems += check_not_below_held(wanted, await self._allocations.held())
            if problems:
                raise InvalidInput.of(problems)
            rec = replace(rec, reserved=wanted, updated_at=datetime.now(UTC))
            await self._save(rec)
        log.info("reservation changed: %s MHz, %s MB, GPUs %s", wanted.cpu_mhz, wanted.memory_mb, wanted.gpus)
        return rec

    async def set_available(self, available: bool) -> Onboarding:
        async with self._lock:
            rec = replace(await self.require(), is_available=available, updated_at=datetime.now(UTC))
            await self._save(rec)
        log.info("availability set to %s", available)
        return rec

    async def offboard(self, force: bool) -> None:
        async with self._lock:
            await self.require()
            running = await self._allocations.count()
            if running and not force:
                raise Conflict(
                    f"{running} job(s) are running on this machine; wait for them or offboard with force",
                    code="jobs_running",
                )
            await self._save(None)
        log.info("offboarded%s", f" with {running} job(s) still running" if running else "")

    def _check_terms(self, channel: str, payment_addr: str, ntx_price: int) -> list[FieldProblem]:
        problems = []
        if channel not in self._channels:
            problems.append(FieldProblem("channel", f"unknown channel {channel!r}; known: {', '.join(self._channels)}"))
        why = wallet.payout_problem(payment_addr)
        if why:
            problems.append(FieldProblem("payment_addr", why))
        if not 0 <= ntx_price <= MAX_PRICE:
            problems.append(FieldProblem("ntx_price", f"must be between 0 and {MAX_PRICE} wei"))
        return problems

    async def _save(self, rec: Onboarding | None) -> None:
        if rec is None:
            await self._records.delete()
        else:
            await self._records.put(rec)
        await self._render(rec)
        if self._on_change is not None:
            await self._on_change()

    async def _render(self, rec: Onboarding | None) -> None:
        if rec is None:
            await asyncio.to_thread(self.metadata_path.unlink, missing_ok=True)
            return
        await asyncio.to_thread(metadata.write_atomic, self.metadata_path, await self.metadata_of(rec))

    async def metadata_of(self, rec: Onboarding) -> dict[str, Any]:
        """NuNet's metadata document, extended with GPUs, price and availability."""
        m = self.machine
        free = rec.reserved.minus(await self._allocations.held())
        return {
            "name": socket.gethostname(),
            "update_timestamp": int(rec.updated_at.timestamp()),
            "onboarded_at": rec.onboarded_at.isoformat(),
            "resource": {"memory_max": m.memory_mb, "total_core": m.cores, "cpu_max": m.cpu_mhz},
            "reserved": {"cpu": rec.reserved.cpu_mhz, "memory": rec.reserved.memory_mb},
            "available": {"cpu": free.cpu_mhz, "memory": free.memory_mb},
            "gpu_info": [
                {"index": g.index, "vendor": g.vendor, "model": g.model, "vram_mb": g.vram_mb}
                for g in m.gpus
                if g.index in rec.reserved.gpus
            ],
            "network": rec.channel,
            "public_key": rec.payment_addr,
            "ntx_price": rec.ntx_price,
            "is_available": rec.is_available,
            "dms_version": self._version,
        }
