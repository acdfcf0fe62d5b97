"""WASM executor (wasmtime, WASI preview 1): each job in a worker process, under hard limits.

Limits come from the job's own request: linear memory capped at `memory_mb` (past it `memory.grow`
returns -1), wall time ended at `timeout_s` by epoch interruption inside the worker, and a hard kill of
the worker a moment later for a module that does not stop (blocked in a WASI sleep, which no epoch
deadline interrupts). No network, no host filesystem but the job's own `/inputs` (read-only) and
`/outputs` (writable) preopens. Workers are pre-started processes and reused after a clean end.
`ContainerSpec.image` holds the module's sha256; `command` its arguments.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dms.executor.base import (
    ContainerSpec,
    EndReason,
    ExecutorError,
    ImageMissing,
    Leftover,
    LogSink,
    RunResult,
    StartHook,
)
from dms.executor.docker_logs import LogBatcher
from dms.executor.modules import ModuleStore
from dms.executor.wasm_worker import PAGE, WorkerJob, WorkerResult

log = logging.getLogger(__name__)

KIND = "wasm"
WORKER_COMMAND = (sys.executable, "-m", "dms.executor.wasm_worker")
"""Started with two more arguments: the socket's file descriptor and the daemon's pid."""
QUEUE_BOUND = 16
"""Worker messages (output batches of up to 64 KiB) waiting for the event loop, per job."""
KILL_GRACE_S = 1.0
"""How long past its duration a module may take to stop by itself before its worker is killed."""
WORKER_START_TIMEOUT_S = 30.0
MEMORY_NEAR = 0.1
"""A module that fails with its linear memory within this share of its limit (or one page) failed on it."""


def memory_verdict(result: WorkerResult, limit_bytes: int) -> str | None:
    """Pure: the reason to show when a failed module had reached its memory limit, else None.

    wasmtime-py has no hook on a refused `memory.grow`, so the limit is taken as the cause when the module
    failed with its memory within one page, or 10 %, of the limit (a grow past it returned -1).
    """
    if result.ending not in ("exited", "trap") or (result.ending == "exited" and result.exit_code == 0):
        return None
    headroom = limit_bytes - result.memory_bytes
    if headroom >= max(PAGE, int(limit_bytes * MEMORY_NEAR)):
        return None
    how = f"exited with code {result.exit_code}" if result.ending == "exited" else f"trapped: {result.detail}"
    mb = limit_bytes // 2**20
    return f"the memory limit was reached ({mb} MB of linear memory; memory.grow returned -1), then the module {how}"


@dataclass(eq=False)
class Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    engine: str = "cranelift"
    """"cranelift" (native code) or "pulley" (the interpreter, where memory may not be made executable)."""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


class WorkerPool:
    """Pre-started worker processes: `warm` wait idle so a job starts at once; more start on demand.

    A worker is a fresh `python -m dms.executor.wasm_worker` (not a fork of the daemon, whose threads
    and sockets must not be copied), talking over a socket pair with multiprocessing's framing.
    """

    def __init__(self, warm: int = 1, command: Sequence[str] = WORKER_COMMAND) -> None:
        self._warm = warm
        self._command = tuple(command)
        self.engine: str | None = None
        """The engine the last worker started with."""
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._filling: asyncio.Task[None] | None = None
        self._closed = False

    def _spawn(self) -> Worker:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            proc = subprocess.Popen(
                [*self._command, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, close_fds=True,
            )  # fmt: skip
            worker = Worker(proc, Connection(ours.detach()))
        try:
            ready = worker.conn.recv() if worker.conn.poll(WORKER_START_TIMEOUT_S) else None
        except (EOFError, OSError):
            ready = None
        if not (isinstance(ready, tuple) and len(ready) == 2 and ready[0] == "ready"):
            worker.kill()
            raise ExecutorError("a WASM worker process did not start")
        worker.engine = str(ready[1])
        if worker.engine != self.engine:
            self.engine = worker.engine
            if worker.engine.startswith("pulley"):
                log.warning(
                    "WASM modules run on wasmtime's Pulley interpreter: this process may not make memory "
                    "executable (systemd MemoryDenyWriteExecute=yes?), so no native code"
                )
        return worker

    async def fill(self) -> None:
        while not self._closed and len(self._idle) < self._warm:
            try:
                worker = await asyncio.to_thread(self._spawn)
            except ExecutorError as exc:  # a job will try again, and say why if it fails too
                log.warning("cannot pre-start a WASM worker: %s", exc)
                return
            if self._closed:
                worker.kill()
                return
            self._idle.append(worker)

    def refill(self) -> None:
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self.fill())

    async def acquire(self) -> Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive():
                break
            worker.kill()
        else:
            worker = await asyncio.to_thread(self._spawn)
        self._busy.add(worker)
        self.refill()
        return worker

    def release(self, worker: Worker, reusable: bool) -> None:
        self._busy.discard(worker)
        if reusable and not self._closed and worker.alive() and len(self._idle) < self._warm + 4:
            self._idle.append(worker)
        else:
            worker.kill()

    async def close(self) -> None:
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(BaseException):
                await self._filling
        for w in [*self._idle, *self._busy]:
            w.kill()
        self._idle.clear()
        self._busy.clear()


def read_messages(conn: Connection, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[Any, ...]]) -> None:
    """A thread per running job: the worker's messages onto the event loop, until `done` or the pipe ends.

    The queue is bounded and this thread waits for room, so a module that writes faster than the daemon
    handles its output is slowed down (the socket fills, its writes block) instead of filling memory.
    """
    while True:
        try:
            msg = conn.recv()
        except Exception:  # EOF, a closed socket, a message we cannot read: the worker is lost to us
            msg = ("dead",)
        try:
            asyncio.run_coroutine_threadsafe(queue.put(msg), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):  # the loop is closed: nobody waits any more
            return
        if msg[0] in ("done", "dead"):
            return


async def drain_until_end(queue: asyncio.Queue[tuple[Any, ...]]) -> None:
    """Take a killed worker's last messages off the queue, so its reader thread reaches the end."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while (await queue.get())[0] not in ("done", "dead"):
                pass


class WasmExecutor:
    """Runs WASM jobs. Modules come from `modules`; each job's `/inputs` and `/outputs` live under `work`."""

    def __init__(
        self,
        modules: ModuleStore,
        work: Path,
        log_batch_s: float = 0.2,
        warm: int = 1,
        worker_command: Sequence[str] = WORKER_COMMAND,
        kill_grace_s: float = KILL_GRACE_S,
    ) -> None:
        self.modules = modules
        self._kill_grace_s = kill_grace_s
        self._work = work
        self._batch_s = log_batch_s
        self._pool = WorkerPool(warm, worker_command)
        self._running: dict[str, Worker] = {}
        self._cancelled: set[str] = set()
        self._draining: set[asyncio.Task[None]] = set()

    async def start(self, wait: bool = True) -> None:
        """Pre-start the warm workers (a job then starts without waiting for a process); in the background
        unless `wait`."""
        if await self.available() is None:
            if wait:
                await self._pool.fill()
            else:
                self._pool.refill()

    async def close(self) -> None:
        await self._pool.close()

    async def available(self) -> str | None:
        if importlib.util.find_spec("wasmtime") is None:
            return "wasmtime is not installed"
        return None

    async def kinds(self) -> dict[str, str | None]:
        return {KIND: await self.available()}

    @property
    def engine(self) -> str | None:
        """ "cranelift" or "pulley", as the last worker found; None before any started."""
        return self._pool.engine

    async def has_image(self, image: str) -> bool:
        return self.modules.has(image)

    def outputs(self, job_id: str) -> Path:
        """The job's `/outputs` folder on this machine (kept after the job ends)."""
        return self._work / job_id / "outputs"

    def inputs(self, job_id: str) -> Path:
        return self._work / job_id / "inputs"

    async def run(self, spec: ContainerSpec, on_logs: LogSink, on_start: StartHook | None = None) -> RunResult:
        if not self.modules.has(spec.image):
            raise ImageMissing(f"module {spec.image} is not on this provider")
        if spec.job_id in self._cancelled:
            self._cancelled.discard(spec.job_id)
            return RunResult(-1, EndReason.CANCELLED)
        for d in (self.inputs(spec.job_id), self.outputs(spec.job_id)):
            d.mkdir(parents=True, exist_ok=True)
        job = WorkerJob(
            sha256=spec.image, path=str(self.modules.path(spec.image)), name=spec.image[:12],
            args=spec.command, env=tuple(spec.env.items()), memory_bytes=spec.memory_mb * 2**20,
            timeout_s=spec.timeout_s, inputs=str(self.inputs(spec.job_id)), outputs=str(self.outputs(spec.job_id)),
            fuel=spec.fuel,
        )  # fmt: skip
        worker = await self._pool.acquire()
        self._running[spec.job_id] = worker
        reusable = False
        try:
            result, reusable = await self._drive(worker, job, spec, on_logs, on_start)
            return result
        finally:
            self._running.pop(spec.job_id, None)
            self._cancelled.discard(spec.job_id)
            self._pool.release(worker, reusable)
            self._tidy(spec.job_id)

    def _tidy(self, job_id: str) -> None:
        """Keep a job's folder only when it left something in `/outputs`."""
        with contextlib.suppress(OSError):
            if not any(self.outputs(job_id).iterdir()):
                shutil.rmtree(self._work / job_id, ignore_errors=True)

    async def _drive(
        self, worker: Worker, job: WorkerJob, spec: ContainerSpec, on_logs: LogSink, on_start: StartHook | None
    ) -> tuple[RunResult, bool]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(QUEUE_BOUND)
        batch = LogBatcher(on_logs, self._batch_s)
        try:
            worker.conn.send(("run", job))
        except OSError as exc:
            raise ExecutorError(f"the WASM worker is gone: {exc}") from exc
        threading.Thread(target=read_messages, args=(worker.conn, loop, queue), daemon=True).start()
        done: WorkerResult | None = None
        killed = ended = False
        try:
            if on_start is not None:
                await on_start()
            async with asyncio.timeout(spec.timeout_s + self._kill_grace_s if spec.timeout_s else None):
                while True:
                    msg = await queue.get()
                    if msg[0] in ("out", "err"):
                        batch.add(msg[0] == "err", msg[1])
                        continue
                    ended = True
                    if msg[0] == "done":
                        done = msg[1]
                    break
        except TimeoutError:
            killed = True
        finally:
            if not ended:  # timed out or cancelled: stop the module, and let the reader thread finish
                worker.kill()
                drain = asyncio.create_task(drain_until_end(queue))
                self._draining.add(drain)
                drain.add_done_callback(self._draining.discard)
            await batch.close()
        return self._verdict(spec, done, killed), done is not None

    def _verdict(self, spec: ContainerSpec, done: WorkerResult | None, killed: bool) -> RunResult:
        if spec.job_id in self._cancelled:
            return RunResult(-1 if done is None else done.exit_code, EndReason.CANCELLED)
        if killed:
            return RunResult(-1, EndReason.TIMEOUT, "killed at its duration (it did not stop: blocked in a host call)")
        if done is None:
            raise ExecutorError("the WASM worker process died")
        if done.ending == "error":
            raise ExecutorError(done.detail)
        if done.ending in ("timeout", "fuel"):
            return RunResult(done.exit_code, EndReason.TIMEOUT, done.detail)
        memory = memory_verdict(done, spec.memory_mb * 2**20)
        if memory is not None:
            return RunResult(done.exit_code, EndReason.OOM_KILLED, memory)
        if done.ending == "trap":
            return RunResult(done.exit_code, EndReason.EXITED, f"trapped: {done.detail}")
        return RunResult(done.exit_code, EndReason.EXITED)

    async def cancel(self, job_id: str) -> None:
        self._cancelled.add(job_id)
        worker = self._running.get(job_id)
        if worker is not None:
            worker.kill()

    async def reconcile(self) -> list[Leftover]:
        """Workers die with the daemon, so nothing runs; remove the work folders of jobs left behind."""
        if self._work.is_dir():
            for d in self._work.iterdir():
                await asyncio.to_thread(shutil.rmtree, d, True)
        return []
