"""The asyncio <-> trio bridge: results, errors, cancellation both ways, signals, shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
import trio
from trio_typing import TaskStatus

from dms.network.bridge import TrioThread
from dms.network.errors import NetworkError


@pytest.fixture
async def bridge() -> AsyncIterator[TrioThread]:
    t = TrioThread("test-trio")
    await t.start()
    yield t
    await t.stop()


async def test_call_returns_the_trio_result(bridge: TrioThread) -> None:
    async def work() -> str:
        await trio.sleep(0.01)
        return trio.lowlevel.current_root_task().name

    assert isinstance(await bridge.call(work), str)


async def test_call_raises_the_trio_exception(bridge: TrioThread) -> None:
    async def fail() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await bridge.call(fail)


async def test_signals_are_blocked_in_the_trio_thread(bridge: TrioThread) -> None:
    async def mask() -> set[int | signal.Signals]:
        return signal.pthread_sigmask(signal.SIG_BLOCK, [])

    blocked = await bridge.call(mask)
    assert {signal.SIGINT, signal.SIGTERM} <= blocked


async def test_cancelling_the_asyncio_side_cancels_the_trio_task(bridge: TrioThread) -> None:
    cancelled = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            loop.call_soon_threadsafe(cancelled.set)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bridge.call(forever), 0.1)
    await asyncio.wait_for(cancelled.wait(), 2)


async def test_call_asyncio_from_trio(bridge: TrioThread) -> None:
    async def on_asyncio() -> int:
        await asyncio.sleep(0.01)
        return 7

    async def from_trio() -> int:
        return await bridge.call_asyncio(on_asyncio()) * 6

    assert await bridge.call(from_trio) == 42


async def test_start_service_returns_what_it_reports(bridge: TrioThread) -> None:
    async def service(*, task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("ready")
        await trio.sleep_forever()

    assert await bridge.start_service(service) == "ready"


async def test_after_stop_calls_fail_with_network_error() -> None:
    t = TrioThread("test-trio")
    await t.start()
    await t.stop()
    await t.stop()  # idempotent

    async def noop() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(NetworkError, match="not running"):
        await t.call(noop)


async def test_stop_fails_calls_in_flight() -> None:
    t = TrioThread("test-trio")
    await t.start()
    call = asyncio.ensure_future(t.call(trio.sleep_forever))
    await asyncio.sleep(0.05)
    await t.stop()
    with pytest.raises(NetworkError, match="stopped before answering"):
        await call
