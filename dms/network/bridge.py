"""One trio event loop in a dedicated thread, driven from asyncio.

py-libp2p runs on trio only; the daemon runs on asyncio. The trio loop lives in its own thread with
SIGINT and SIGTERM blocked there, so the daemon's main thread keeps receiving them and shuts down in
order. Crossing costs about 1 ms a call:

- asyncio -> trio: `TrioThread.call` schedules a trio task with `TrioToken.run_sync_soon` and hands
  the outcome back with `loop.call_soon_threadsafe`. Cancelling the awaiting asyncio task cancels the
  trio task.
- trio -> asyncio: `TrioThread.call_asyncio`, from trio code, runs a coroutine on the daemon's loop
  with `asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future as ThreadFuture
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from dms.network.errors import NetworkError

if TYPE_CHECKING:  # the trio-typing stubs installed with libp2p shadow trio's own annotations
    from trio_typing import TaskStatus

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
log = logging.getLogger(__name__)


class Service(Protocol[T_co]):
    """A long-running trio task that reports readiness, and a value, with `task_status.started(value)`."""

    def __call__(self, *, task_status: TaskStatus[T_co]) -> Awaitable[None]: ...


def _settle(fut: asyncio.Future[T], value: T | None, exc: BaseException | None) -> None:
    if fut.done():  # the asyncio side gave up (cancelled) first
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)  # type: ignore[arg-type]  # value is a T whenever exc is None


class TrioThread:
    """A trio loop in a daemon thread; `start()`, then `call()` into it, then `stop()`."""

    def __init__(self, name: str = "dms-p2p") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop_requested: trio.Event | None = None
        self._finished: asyncio.Future[None] | None = None
        self._crash: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._finished is not None and not self._finished.done()

    async def start(self) -> None:
        """Start the thread and its trio loop; return once the loop accepts calls."""
        if self._finished is not None:
            raise NetworkError("the p2p thread was already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        ready: asyncio.Future[None] = loop.create_future()
        self._finished = loop.create_future()
        threading.Thread(target=self._thread_main, args=(ready,), name=self._name, daemon=True).start()
        await ready

    def _thread_main(self, ready: asyncio.Future[None]) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        error: BaseException | None = None
        try:
            trio.run(self._trio_main, ready)
        except BaseException as e:  # a crashed service: record it, fail every later call with it
            log.error("p2p thread crashed: %r", e, exc_info=e)
            self._crash = e
            error = NetworkError(f"the p2p thread crashed: {e!r}")
        finally:
            self._to_loop(_settle, ready, None, error)
            assert self._finished is not None
            self._to_loop(_settle, self._finished, None, None)

    async def _trio_main(self, ready: asyncio.Future[None]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop_requested = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._to_loop(_settle, ready, None, None)
            await self._stop_requested.wait()
            nursery.cancel_scope.cancel()

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the daemon's loop is already closed: nobody is waiting
            self._loop.call_soon_threadsafe(fn, *args)

    def _to_trio(self, fn: Callable[[], object]) -> None:
        if self._token is None or not self.running:
            crashed = f" (it crashed: {self._crash!r})" if self._crash else ""
            raise NetworkError(f"the p2p thread is not running{crashed}")
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            raise NetworkError("the p2p thread has stopped") from None

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` as a trio task in the thread and return its result (or raise its exception).

        Raises NetworkError when the thread is not running or stops before `fn` finishes.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()

        async def task() -> None:
            settled = False
            try:
                with scope:
                    value = await fn()
                    settled = True
                    self._to_loop(_settle, fut, value, None)
            except Exception as e:
                settled = True
                self._to_loop(_settle, fut, None, e)
            finally:
                if not settled:
                    self._to_loop(_settle, fut, None, NetworkError("the p2p thread stopped before answering"))

        def spawn() -> None:
            assert self._nursery is not None
            try:
                self._nursery.start_soon(task)
            except RuntimeError:  # nursery closed: stop() is under way
                self._to_loop(_settle, fut, None, NetworkError("the p2p thread is stopping"))

        self._to_trio(spawn)
        try:
            return await fut
        except asyncio.CancelledError:
            with contextlib.suppress(NetworkError):
                self._to_trio(scope.cancel)
            raise

    async def start_service(self, fn: Service[T]) -> T:
        """Start a long-running trio task; return what it passes to `task_status.started()`.

        An error before `started()` is raised here. After it, the service must handle its own errors:
        one that escapes crashes the thread, and every later call fails with NetworkError.
        """

        async def start() -> T:
            assert self._nursery is not None
            value: T = await self._nursery.start(fn)
            return value

        return await self.call(start)

    async def call_asyncio(self, coro: Coroutine[Any, Any, T]) -> T:
        """From trio code: run `coro` on the daemon's asyncio loop and return its result.

        Cancelling the trio task cancels the coroutine.
        """
        assert self._loop is not None
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        cfut: ThreadFuture[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)

        def wake(_: ThreadFuture[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        cfut.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            cfut.cancel()
            raise
        return cfut.result()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel everything in the thread and wait (up to timeout_s) for it to end. Idempotent."""
        if self._finished is None or self._finished.done():
            return
        assert self._stop_requested is not None
        with contextlib.suppress(NetworkError):
            self._to_trio(self._stop_requested.set)
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), timeout_s)
        except TimeoutError:
            log.warning("the p2p thread did not stop within %.0f s; leaving it (daemon thread)", timeout_s)
