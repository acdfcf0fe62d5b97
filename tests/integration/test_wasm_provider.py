"""A provider with no Docker engine, spoken to line by line as an SP would: admission by executor, the
module arriving in chunks in the deployment stream and checked, a module beyond WASI refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dms.executor.docker import DockerExecutor
from dms.executor.modules import ModuleStore
from dms.executor.router import ExecutorSet
from dms.executor.wasm import WasmExecutor
from dms.jobs.modules import send_module
from dms.jobs.protocol import NeedModule, decode_to_requester
from dms.jobs.provider import ProviderService, ProviderSettings
from dms.payments.gate import NoPayments
from dms.store.allocations import AllocationStore
from dms.store.jobs import EventLog, JobStore
from dms.store.models import CPJobRow
from tests import wasm_modules as m
from tests.integration.jobpair import QueueStream, onboarded
from tests.procs import free_port

SP = "sp-peer"


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[ProviderService]:
    store, onboarding = await onboarded(tmp_path)
    docker = DockerExecutor("t-wasm", url=f"tcp://127.0.0.1:{free_port()}")  # nothing listens there
    modules = ModuleStore(tmp_path / "cp-modules")
    wasm = WasmExecutor(modules, tmp_path / "work", log_batch_s=0.05)
    await wasm.start()

    async def noop() -> None:
        pass

    p = ProviderService(
        onboarding, AllocationStore(store), ExecutorSet({"docker": docker, "wasm": wasm}), JobStore(store, CPJobRow),
        EventLog(store), ProviderSettings(allow_network=False, image_allowlist=(), heartbeat_s=0.5), noop,
        NoPayments(), modules,
    )  # fmt: skip
    await p.start()
    yield p
    await p.stop()
    await wasm.close()
    await docker.close()
    await store.close()


def open_stream(p: ProviderService) -> tuple[QueueStream, asyncio.Task[None]]:
    a: asyncio.Queue[bytes | None] = asyncio.Queue()
    b: asyncio.Queue[bytes | None] = asyncio.Queue()
    conn = [True]
    served = asyncio.create_task(p.serve(QueueStream(SP, a, b, conn)))
    return QueueStream("cp", b, a, conn), served


def deploy(job_id: str, **spec: Any) -> bytes:
    import json

    body = {"resources": {"cpu_mhz": 100, "cores": 0.5, "memory_mb": 16}, "max_price": 10**18, "duration_s": 20}
    msg = {"type": "deploy", "job_id": job_id, "spec": {**body, **spec}, "payment": {"price": 0}}
    return json.dumps(msg).encode() + b"\n"


def wasm_job(sha: str, *args: str) -> dict[str, Any]:
    return {"executor": "wasm", "module": sha, "args": list(args)}


async def answer(sp: QueueStream) -> Any:
    return decode_to_requester(await sp.receive(10))


async def test_the_node_runs_wasm_only_and_says_so(provider: ProviderService) -> None:
    assert provider.working_executors == ("wasm",) and provider.executor_problem is None
    sp, served = open_stream(provider)
    await sp.send(deploy("c1", image="dms-test/busybox:1", command=["true"]))
    refused = await answer(sp)
    assert refused.type == "rejected"
    assert refused.reason.startswith("this provider runs wasm jobs only: no working docker executor (")
    await served


async def test_a_module_is_sent_in_chunks_checked_and_run(provider: ProviderService, tmp_path: Path) -> None:
    # Over one chunk: 300 KB of data in the module.
    binary = m.wasm(m.program("", f'(data (i32.const 0) "{"x" * 300_000}")', pages=8))
    sp_store = ModuleStore(tmp_path / "sp-modules")
    sha = await sp_store.put_blob(binary)
    sp, served = open_stream(provider)
    await sp.send(deploy("w1", **wasm_job(sha)))
    ask = await answer(sp)
    assert isinstance(ask, NeedModule) and ask.sha256 == sha
    await send_module(sp, ask, sp_store)
    assert (await answer(sp)).type == "accepted"
    events = []
    while (msg := await answer(sp)).type != "end":
        if msg.type == "event":
            events.append(msg)
    assert events[-1].kind == "result" and events[-1].data["state"] == "completed", events
    await served
    # The second job with that module needs no transfer.
    sp, served = open_stream(provider)
    await sp.send(deploy("w2", **wasm_job(sha)))
    assert (await answer(sp)).type == "accepted"
    await sp.close()
    await served


async def test_a_module_that_does_not_hash_to_its_name_is_refused(provider: ProviderService) -> None:
    claimed = hashlib.sha256(b"something else").hexdigest()
    sp, served = open_stream(provider)
    await sp.send(deploy("w3", **wasm_job(claimed)))
    assert isinstance(await answer(sp), NeedModule)
    data = base64.b64encode(m.wasm(m.PRINTER)).decode()
    await sp.send(b'{"type": "module_chunk", "job_id": "w3", "data": "%s", "last": true}\n' % data.encode())
    refused = await answer(sp)
    assert refused.type == "rejected" and f"not {claimed}" in refused.reason
    await served
    assert provider.running == 0


async def test_a_module_beyond_wasi_is_refused_at_admission(provider: ProviderService, tmp_path: Path) -> None:
    sp_store = ModuleStore(tmp_path / "sp-modules")
    sha = await sp_store.put_blob(m.wasm(m.SOCKETS))
    sp, served = open_stream(provider)
    await sp.send(deploy("w4", **wasm_job(sha)))
    ask = await answer(sp)
    await send_module(sp, ask, sp_store)
    refused = await answer(sp)
    assert refused.type == "rejected" and "env.connect" in refused.reason and "WASI preview 1" in refused.reason
    await served


async def test_cancel_stops_a_module_blocked_in_a_sleep(provider: ProviderService, tmp_path: Path) -> None:
    sp_store = ModuleStore(tmp_path / "sp-modules")
    sha = await sp_store.put_blob(m.wasm(m.SLEEPER))
    sp, served = open_stream(provider)
    await sp.send(deploy("w5", **wasm_job(sha)))
    await send_module(sp, await answer(sp), sp_store)
    assert (await answer(sp)).type == "accepted"
    while not ((msg := await answer(sp)).type == "event" and msg.kind == "logs"):
        pass
    assert msg.data["stdout"] == "sleeping\n"
    await sp.send(b'{"type": "cancel", "job_id": "w5"}\n')
    while (msg := await answer(sp)).type != "event" or msg.kind != "result":
        pass
    assert msg.data["state"] == "cancelled"
    await served
