"""The WASM executor with real modules (WAT text compiled by wasmtime), real worker processes."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dms.executor.base import ContainerSpec, EndReason, ImageMissing
from dms.executor.modules import ModuleStore, inspect_module
from dms.executor.wasm import WasmExecutor
from tests import wasm_modules as m
from tests.integration.logsink import Logs


@pytest.fixture
async def executor(tmp_path: Path) -> AsyncIterator[WasmExecutor]:
    ex = WasmExecutor(ModuleStore(tmp_path / "modules"), tmp_path / "work", log_batch_s=0.05, warm=2)
    await ex.start()
    yield ex
    await ex.close()


async def spec(ex: WasmExecutor, wat: str, **kw: object) -> ContainerSpec:
    sha = await ex.modules.put_blob(m.wasm(wat))
    fields: dict[str, object] = {"memory_mb": 16, "timeout_s": 20.0, **kw}
    return ContainerSpec(job_id=uuid.uuid4().hex[:12], image=sha, kind="wasm", **fields)  # type: ignore[arg-type]


async def test_args_and_env_reach_the_module_and_output_is_streamed(executor: WasmExecutor) -> None:
    logs = Logs()
    started = asyncio.Event()

    async def on_start() -> None:
        started.set()

    s = await spec(executor, m.PRINTER, command=("hello", "two words"), env={"GREETING": "hi", "N": "1"})
    result = await executor.run(s, logs, on_start)
    assert result.reason == EndReason.EXITED and result.exit_code == 0 and started.is_set()
    lines = logs.stdout.splitlines()
    assert lines[1:3] == ["hello", "two words"]
    assert "GREETING=hi" in lines and "N=1" in lines
    assert not any(line.startswith(("PATH=", "HOME=")) for line in lines), "the host's environment leaked"
    assert logs.stderr == "done\n"


async def test_cpu_burner_is_stopped_at_its_duration(tmp_path: Path) -> None:
    # A long kill grace: only the epoch deadline inside the worker can end it in time.
    ex = WasmExecutor(ModuleStore(tmp_path / "m"), tmp_path / "w", log_batch_s=0.05, kill_grace_s=30)
    await ex.start()
    try:
        logs = Logs()
        t0 = time.monotonic()
        result = await ex.run(await spec(ex, m.BURNER, timeout_s=1.0), logs)
        took = time.monotonic() - t0
    finally:
        await ex.close()
    assert result.reason == EndReason.TIMEOUT and result.detail == "stopped at its duration"
    assert 1.0 <= took < 10, took
    assert logs.stdout == "burning\n"


async def test_an_instruction_budget_stops_a_burner_long_before_its_duration(executor: WasmExecutor) -> None:
    t0 = time.monotonic()
    result = await executor.run(await spec(executor, m.BURNER, timeout_s=30.0, fuel=5_000_000), Logs())
    assert result.reason == EndReason.TIMEOUT and result.detail == "stopped at its instruction budget (5000000 fuel)"
    assert time.monotonic() - t0 < 10
    again = await executor.run(await spec(executor, m.PRINTER, fuel=1_000_000), logs := Logs())
    assert again.exit_code == 0 and logs.stderr == "done\n"  # a budget that suffices


async def test_module_blocked_in_a_wasi_sleep_is_killed(executor: WasmExecutor) -> None:
    logs = Logs()
    t0 = time.monotonic()
    result = await executor.run(await spec(executor, m.SLEEPER, timeout_s=1.0), logs)
    took = time.monotonic() - t0
    assert result.reason == EndReason.TIMEOUT and "killed" in (result.detail or "")
    assert 2.0 <= took < 8, took  # killed one second past its duration
    assert logs.stdout == "sleeping\n"
    # The pool replaces the killed worker: the next job runs.
    again = await executor.run(await spec(executor, m.PRINTER), Logs())
    assert again.exit_code == 0


async def test_memory_limit_is_reported_when_the_module_fails_on_it(executor: WasmExecutor) -> None:
    logs = Logs()
    result = await executor.run(await spec(executor, m.GROWER, memory_mb=8), logs)
    assert result.reason == EndReason.OOM_KILLED and result.exit_code == 3
    assert "memory limit was reached (8 MB" in (result.detail or "")
    assert logs.stderr == "grow failed\n"


async def test_no_host_path_can_be_opened(executor: WasmExecutor) -> None:
    logs = Logs()
    result = await executor.run(await spec(executor, m.OPENER), logs)
    assert logs.stdout == "denied\n" * 5
    assert result.exit_code == 0 and result.reason == EndReason.EXITED


async def test_outputs_are_written_and_read_back(executor: WasmExecutor) -> None:
    s = await spec(executor, m.WRITER)
    result = await executor.run(s, Logs())
    assert result.exit_code == 0
    assert (executor.outputs(s.job_id) / "result.txt").read_text() == "hello outputs\n"


async def test_several_at_once_each_ends_at_its_own_limit(tmp_path: Path) -> None:
    executor = WasmExecutor(ModuleStore(tmp_path / "modules"), tmp_path / "work", log_batch_s=0.05, warm=5)
    await executor.start()  # five warm workers: what is measured is running side by side, not start-up
    try:
        await several_at_once(executor)
    finally:
        await executor.close()


async def several_at_once(executor: WasmExecutor) -> None:
    async def timed(s: ContainerSpec) -> tuple[EndReason, float]:
        t0 = time.monotonic()
        r = await executor.run(s, Logs())
        return r.reason, time.monotonic() - t0

    specs = [
        await spec(executor, m.BURNER, timeout_s=1.0),
        await spec(executor, m.BURNER, timeout_s=2.0),
        await spec(executor, m.SLEEPER, timeout_s=1.0),
        await spec(executor, m.GROWER, memory_mb=4),
        await spec(executor, m.PRINTER),
    ]
    results = await asyncio.gather(*(timed(s) for s in specs))
    reasons = [r for r, _ in results]
    assert reasons == [EndReason.TIMEOUT, EndReason.TIMEOUT, EndReason.TIMEOUT, EndReason.OOM_KILLED, EndReason.EXITED]
    took = [t for _, t in results]
    assert 1.0 <= took[0] < took[1] and 2.0 <= took[1] < 6.0, took  # each burner at its own duration
    assert 2.0 <= took[2] < 8.0, took  # the sleeper killed one second past its duration
    assert took[4] < took[0], "a printer beside two CPU burners must not wait for them"


async def test_cancel_kills_a_running_module(executor: WasmExecutor) -> None:
    s = await spec(executor, m.SLEEPER, timeout_s=60.0)
    started = asyncio.Event()

    async def on_start() -> None:
        started.set()

    run = asyncio.create_task(executor.run(s, Logs(), on_start))
    await started.wait()
    await executor.cancel(s.job_id)
    result = await asyncio.wait_for(run, 5)
    assert result.reason == EndReason.CANCELLED


async def test_missing_module_and_imports_beyond_wasi(executor: WasmExecutor) -> None:
    with pytest.raises(ImageMissing, match="not on this provider"):
        await executor.run(ContainerSpec(job_id="x", image="a" * 64, kind="wasm"), Logs())
    info = inspect_module(m.wasm(m.SOCKETS))
    assert info.problem is not None and "env.connect" in info.problem and "WASI preview 1 only" in info.problem
    assert inspect_module(m.wasm(m.PRINTER)).problem is None


# A worker started the way systemd's MemoryDenyWriteExecute=yes (the packaged unit) leaves it: the kernel
# refuses to make memory executable (prctl PR_SET_MDWE, as systemd itself uses where the kernel has it).
MDWE_WORKER = (
    sys.executable,
    "-c",
    "import ctypes, runpy, sys; assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0; sys.argv[0] = 'w'; "
    "runpy.run_module('dms.executor.wasm_worker', run_name='__main__')",
)


async def test_without_executable_memory_modules_run_on_the_interpreter(tmp_path: Path) -> None:
    ex = WasmExecutor(ModuleStore(tmp_path / "m"), tmp_path / "w", log_batch_s=0.05, worker_command=MDWE_WORKER)
    await ex.start()
    try:
        assert ex.engine is not None and ex.engine.startswith("pulley")
        logs = Logs()
        result = await ex.run(await spec(ex, m.PRINTER, command=("under", "mdwe")), logs)
        assert result.exit_code == 0 and logs.stdout.splitlines()[1:3] == ["under", "mdwe"]
        burner = await ex.run(await spec(ex, m.BURNER, timeout_s=0.5), Logs())
        assert burner.reason == EndReason.TIMEOUT  # epoch interruption works on the interpreter too
    finally:
        await ex.close()


async def test_the_engine_is_native_code_where_allowed(executor: WasmExecutor) -> None:
    assert executor.engine is not None and executor.engine.startswith("cranelift")


async def test_a_flood_of_output_is_batched_and_starves_nobody(executor: WasmExecutor) -> None:
    flood_logs = Logs()

    async def timed(s: ContainerSpec, logs: Logs) -> float:
        t0 = time.monotonic()
        await executor.run(s, logs)
        return time.monotonic() - t0

    flood = asyncio.create_task(timed(await spec(executor, m.FLOODER, timeout_s=1.5), flood_logs))
    await asyncio.sleep(0)
    printer = await timed(await spec(executor, m.PRINTER), Logs())
    flooded = await flood
    assert printer < flooded, "a job beside a flood of output must not wait for it"
    out = flood_logs.stdout
    assert len(out) > 1_000_000 and set(out) == {"x"}, len(out)
    assert len(flood_logs.chunks) < len(out) / 8192 / 4, "writes are sent in batches, not one by one"
