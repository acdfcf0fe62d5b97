"""Requester and provider services end to end over an in-process line stream, with the real Docker engine
and real SQLite stores. (The same services over real libp2p daemons are in tests/e2e.)"""

from __future__ import annotations

import asyncio
import dataclasses
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

    async def send(self, line: bytes) -> None:
        if not self._conn[0]:
            raise StreamClosed("connection closed")
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

    async def open(self, peer_id: str, protocol: str) -> QueueStream:
        assert protocol == PROTOCOL
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


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    store = Store(tmp_path)
    await store.open()
    machine = measure(tmp_path, gpus=[])
    onboarding = OnboardingService(
        machine, OnboardingStore(store), AllocationStore(store), tmp_path / "m.json", ["nunet-test"], "t"
    )
    await onboarding.onboard(
        reserved=Resources(machine.cpu_mhz // 2, machine.memory_mb // 2), channel="nunet-test",
        payment_addr=PAYOUT, ntx_price=1000, is_available=True,
    )  # fmt: skip
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
        return [Candidate(CP, "nunet-test", True, free.cpu_mhz, machine.cores, free.memory_mb, (), 1000, ("docker",))]

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


async def test_happy_path_frames_in_order(pair: Pair) -> None:
    job_id, frames = await run_to_end(pair, job("echo hello from the job"))
    actions = [f["action"] for f in frames]
    assert actions[0] == "job-submitted" and actions[1] == "deployment-response" and actions[-1] == "job-completed"
    assert frames[1]["message"]["success"] is True
    assert "hello from the job" in "".join(
        f["message"]["stdout"] for f in frames if f["action"] == "log-stream-response"
    )
    assert frames[-1]["detail"] == {"exit_code": 0}
    assert (await pair.requester.get(job_id)).state == "completed"
    assert await pair.onboarding.free() == (await pair.onboarding.require()).reserved  # resources released


async def test_exit_code_fails_the_job(pair: Pair) -> None:
    _, frames = await run_to_end(pair, job("echo bye; exit 1"))
    assert frames[-1]["action"] == "job-failed"
    assert frames[-1]["message"] == "exited with code 1" and frames[-1]["detail"]["exit_code"] == 1


async def test_refusal_is_reported(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("true"), None)
    await pair.onboarding.set_available(False)
    await pair.requester.send_status(quote["job_id"], "success", None)
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert frames[-2]["action"] == "deployment-response" and frames[-2]["message"]["success"] is False
    assert "not accepting jobs" in frames[-1]["message"]


async def test_cancel_while_running(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("echo up; sleep 60"), None)
    await pair.requester.send_status(quote["job_id"], "success", None)
    async for _, f in pair.requester.frames(quote["job_id"]):
        if f["action"] == "log-stream-response":
            break
    await pair.requester.cancel(quote["job_id"])
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert frames[-1]["action"] == "job-failed" and frames[-1]["message"] == "cancelled"
    assert (await pair.requester.get(quote["job_id"])).state == "cancelled"


async def test_subscribe_again_replays_everything_once(pair: Pair) -> None:
    job_id, frames = await run_to_end(pair, job("echo a; sleep 0.2; echo b"))
    again = [f async for _, f in pair.requester.frames(job_id)]
    assert again == frames
    seqs = [s async for s, _ in pair.requester.frames(job_id, after=2)]
    assert seqs[0] == 3


async def test_provider_silence_fails_the_job_within_three_heartbeats(pair: Pair) -> None:
    quote = await pair.requester.request_service(job("echo up; sleep 60"), None)
    await pair.requester.send_status(quote["job_id"], "success", None)
    async for _, f in pair.requester.frames(quote["job_id"]):
        if f["action"] == "log-stream-response":
            break
    pair.wire.up = False  # the provider disappears: no new streams...
    await pair.wire.opened[-1].close()  # ...and the current one drops
    t0 = asyncio.get_running_loop().time()
    frames = [f async for _, f in pair.requester.frames(quote["job_id"])]
    assert frames[-1]["action"] == "job-failed" and "compute provider lost" in frames[-1]["message"]
    assert asyncio.get_running_loop().time() - t0 < 3 * 0.5 + 1


async def test_next_candidate_after_an_unreachable_or_refusing_one(pair: Pair) -> None:
    cp = pair.requester._candidates()[0]
    ghost = dataclasses.replace(cp, peer_id="ghost-peer", ntx_price=1)  # cheapest: tried first, never answers
    pair.requester._candidates = lambda: [ghost, cp]
    job_id, frames = await run_to_end(pair, job("echo fine"))
    assert frames[1]["message"]["success"] is True and "deployed to cp-peer" in frames[1]["message"]["content"]
    assert frames[-1]["action"] == "job-completed"
    assert (await pair.requester.get(job_id)).cp_peer_id == CP


async def test_provider_log_buffer_is_bounded_with_a_marker(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    import dms.jobs.provider as provider_module

    monkeypatch.setattr(provider_module, "LOG_KEEP", 3)
    monkeypatch.setattr(provider_module, "LOG_TRIM_STEP", 2)
    job_id, frames = await run_to_end(pair, job("for i in $(seq 12); do echo line$i; sleep 0.15; done"))
    shown = "".join(f["message"]["stdout"] for f in frames if f["action"] == "log-stream-response")
    assert shown == "".join(f"line{i}\n" for i in range(1, 13))  # the live stream lost nothing
    kept = [e for e in await pair.provider._events.after("cp", job_id, 0) if e.kind == "logs"]
    assert len(kept) <= 3 + 2
    markers = [e for e in kept if "older log batches were dropped" in e.payload["stderr"]]
    assert markers and "line12" in "".join(e.payload["stdout"] for e in kept)
