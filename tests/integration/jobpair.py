"""A requester and a provider service wired over an in-process line stream, with the real Docker engine and
real SQLite stores: the fixture the job-service tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dms.executor.docker import DockerExecutor
from dms.jobs.protocol import PROTOCOL
from dms.jobs.provider import ProviderService, ProviderSettings
from dms.jobs.requester import RequesterService, RequesterSettings
from dms.jobs.spec import JobSpec
from dms.jobs.transport import PeerUnreachable, StreamClosed
from dms.matching import Candidate
from dms.onboarding.hardware import measure
from dms.onboarding.rules import Resources
from dms.onboarding.service import OnboardingService
from dms.payments.gate import NoPayments
from dms.store.allocations import AllocationStore
from dms.store.db import Store
from dms.store.jobs import EventLog, JobStore, TransactionLog
from dms.store.models import CPJobRow, SPJobRow
from dms.store.onboarding import OnboardingStore
from tests.conftest import PAYOUT

CP = "cp-peer"
SP = "sp-peer"


class QueueStream:
    """One end of an in-process newline stream. Closing either end drops the whole connection."""

    def __init__(
        self, remote: str, inbox: asyncio.Queue[bytes | None], outbox: asyncio.Queue[bytes | None], conn: list[bool]
    ) -> None:
        self._remote, self._in, self._out, self._conn = remote, inbox, outbox, conn

    @property
    def remote_peer(self) -> str:
        return self._remote

    async def send(self, lines: bytes) -> None:
        if not self._conn[0]:
            raise StreamClosed("connection closed")
        for line in lines.splitlines(keepends=True):  # one write may carry several lines, as on a real stream
            await self._out.put(line)

    async def receive(self, wait_s: float) -> bytes:
        item = await asyncio.wait_for(self._in.get(), wait_s)
        if item is None:
            raise StreamClosed("closed by peer")
        return item.rstrip(b"\n")

    async def close(self) -> None:
        if self._conn[0]:
            self._conn[0] = False
            await self._out.put(None)
            await self._in.put(None)


@dataclass
class Wire:
    provider: ProviderService
    up: bool = True
    served: set[asyncio.Task[None]] = field(default_factory=set)
    opened: list[QueueStream] = field(default_factory=list)
    """The requester's ends of the streams dialled, in order."""
    dials: int = 0
    """Dials tried, those that failed included."""

    async def open(self, peer_id: str, protocol: str) -> QueueStream:
        assert protocol == PROTOCOL
        self.dials += 1
        if peer_id != CP or not self.up:
            raise PeerUnreachable(f"cannot dial {peer_id}")
        a: asyncio.Queue[bytes | None] = asyncio.Queue()
        b: asyncio.Queue[bytes | None] = asyncio.Queue()
        conn = [True]
        task = asyncio.create_task(self.provider.serve(QueueStream(SP, a, b, conn)))
        self.served.add(task)
        task.add_done_callback(self.served.discard)
        self.opened.append(QueueStream(CP, b, a, conn))
        return self.opened[-1]


@dataclass
class Pair:
    requester: RequesterService
    provider: ProviderService
    onboarding: OnboardingService
    wire: Wire


async def onboarded(tmp_path: Path) -> tuple[Store, OnboardingService]:
    """An open store under `tmp_path` and this machine onboarded on it with half its resources."""
    store = Store(tmp_path)
    await store.open()
    machine = measure(tmp_path, gpus=[])
    onboarding = OnboardingService(
        machine, OnboardingStore(store), AllocationStore(store), tmp_path / "m.json", ["nunet-test"], "t"
    )
    await onboarding.onboard(
        reserved=Resources(machine.cpu_mhz // 2, machine.memory_mb // 2, disk_mb=machine.disk_mb // 2),
        channel="nunet-test", payment_addr=PAYOUT, ntx_price=1000, is_available=True,
    )  # fmt: skip
    return store, onboarding


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    store, onboarding = await onboarded(tmp_path)
    executor = DockerExecutor(f"t-{uuid.uuid4().hex[:8]}", log_batch_s=0.05)

    async def noop() -> None:
        pass

    provider = ProviderService(
        onboarding, AllocationStore(store), executor, JobStore(store, CPJobRow), EventLog(store),
        ProviderSettings(allow_network=False, image_allowlist=(), heartbeat_s=0.5), noop, NoPayments(),
    )  # fmt: skip
    await provider.start()
    wire = Wire(provider)

    async def candidates() -> list[Candidate]:
        free = await onboarding.free()
        return [
            Candidate(
                CP, "nunet-test", True, free.cpu_mhz, onboarding.machine.cores, free.memory_mb, (), 1000, ("docker",),
                disk_mb=free.disk_mb,
            )
        ]  # fmt: skip

    snapshot: list[Candidate] = []

    async def channel() -> str:
        return "nunet-test"

    requester = RequesterService(
        JobStore(store, SPJobRow), EventLog(store), lambda: snapshot, channel, wire,
        RequesterSettings(heartbeat_s=0.5), NoPayments(), TransactionLog(store),
    )  # fmt: skip
    snapshot += await candidates()
    yield Pair(requester, provider, onboarding, wire)
    await requester.stop()
    await provider.stop()
    await executor.settle()  # ended containers are removed in the background, after the result
    assert await executor.reconcile() == []
    await executor.close()
    await store.close()


def job(cmd: str, **kw: Any) -> JobSpec:
    res = {"cpu_mhz": 500, "cores": 0.5, "memory_mb": 64, **kw.pop("resources", {})}
    return JobSpec.model_validate(
        {"image": "dms-test/busybox:1", "command": ["sh", "-c", cmd], "resources": res, "max_price": 10**15,
         "duration_s": 60, **kw}
    )  # fmt: skip


async def run_to_end(p: Pair, spec: JobSpec) -> tuple[str, list[dict[str, Any]]]:
    quote = await p.requester.request_service(spec, None)
    await p.requester.send_status(quote["job_id"], "success", None)
    frames = [f async for _, f in p.requester.frames(quote["job_id"])]
    return quote["job_id"], frames
