"""The worker process of the WASM executor: runs one module at a time, in its own process.

A worker is started before it is needed (`python -m dms.executor.wasm_worker FD PID`), imports only
wasmtime, and serves jobs over a socket until it closes or the parent kills it. Python threads cannot be
killed, and a module blocked in a WASI call (a sleep in `poll_oneoff`) is not stopped by an epoch
deadline, so the parent's hard stop is to kill this process.

Messages, parent -> worker: `("run", WorkerJob)`. Worker -> parent: `("ready", "cranelift" | "pulley")`
once, then per job `("out", bytes)` / `("err", bytes)` as the module writes, and `("done", WorkerResult)`
at its end.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection

import wasmtime

PAGE = 65536
MODULE_CACHE = 16
"""Compiled modules kept per worker, by sha256 (least recently used dropped first)."""
PARENT_CHECK_S = 1.0
OUTPUT_BATCH = 64 * 1024
OUTPUT_FLUSH_S = 0.02


@dataclass(frozen=True)
class WorkerJob:
    sha256: str
    path: str
    name: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    memory_bytes: int = 64 * 2**20
    timeout_s: float | None = None
    inputs: str | None = None
    outputs: str | None = None
    fuel: int | None = None
    """An instruction budget (wasmtime fuel), or None for none."""


@dataclass(frozen=True)
class WorkerResult:
    exit_code: int
    ending: str
    """"exited", "timeout" (the epoch deadline interrupted it), "fuel" (its instruction budget ran out),
    "trap", or "error" (it never started)."""
    detail: str = ""
    memory_bytes: int = 0
    """The module's linear memory when it ended."""


def make_engine(pulley: bool = False, cow: bool = True, fuel: bool = False) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.memory_init_cow = cow
    config.consume_fuel = fuel
    if pulley:
        config.target = "pulley64"
    return wasmtime.Engine(config)


def probe_engine() -> tuple[tuple[bool, bool], str]:
    """Cranelift (native code) when this process may make memory executable; else the Pulley interpreter.

    A service under systemd's MemoryDenyWriteExecute=yes (the packaged unit) may not: wasmtime then fails
    with "unable to make memory executable", and Pulley, which needs no executable memory, runs instead.
    Each is also tried without copy-on-write memory images (memfd), for a sandbox that refuses those.
    """
    for pulley, cow in ((False, True), (False, False), (True, True), (True, False)):
        engine = make_engine(pulley, cow)
        try:
            store = wasmtime.Store(engine)
            store.set_epoch_deadline(1)
            instance = wasmtime.Instance(store, wasmtime.Module(engine, PROBE), [])
            probe = instance.exports(store)["f"]
            assert isinstance(probe, wasmtime.Func) and probe(store) == 120
        except (wasmtime.WasmtimeError, wasmtime.Trap):
            continue
        return (pulley, cow), ("pulley" if pulley else "cranelift") + ("" if cow else " (no copy-on-write images)")
    raise RuntimeError("wasmtime cannot run even its smallest module here")


PROBE = """(module (memory 1) (data (i32.const 0) "x")
  (func (export "f") (result i32) (i32.load8_u (i32.const 0))))"""


class Output:
    """The module's writes, sent to the daemon in batches (at most OUTPUT_BATCH bytes, or after
    OUTPUT_FLUSH_S): a chatty module costs the daemon one message per batch, not one per write. A daemon
    that reads slowly blocks the send, and so the module: output never piles up in memory."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._parts: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None  # started at the first write: a quiet module costs none

    def write(self, stream: str, data: bytes) -> None:
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._tick, daemon=True)
                self._flusher.start()
            self._parts[stream] += data
            if len(self._parts[stream]) >= OUTPUT_BATCH:
                self._send(stream)

    def _send(self, stream: str) -> None:
        if self._parts[stream]:
            self._conn.send((stream, bytes(self._parts[stream])))
            self._parts[stream].clear()

    def _tick(self) -> None:
        while not self._stop.wait(OUTPUT_FLUSH_S):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._send("out")
            self._send("err")

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            flusher = self._flusher
        if flusher is not None:
            flusher.join()
        self.flush()


class Runner:
    """Its engines (one metering fuel, made when a job first asks for an instruction budget) and their
    compiled modules; runs jobs one after another."""

    def __init__(self, pulley: bool, cow: bool) -> None:
        self._settings = (pulley, cow)
        self._engines = {False: make_engine(pulley, cow)}
        self._modules: OrderedDict[tuple[str, bool], wasmtime.Module] = OrderedDict()

    def close(self) -> None:
        """Free the compiled modules, then their engines, while wasmtime's bindings are whole: left to the
        interpreter's exit, wasmtime's finalisers run after its C functions are gone, and print errors."""
        for module in self._modules.values():
            module.close()
        self._modules.clear()
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def engine(self, fuel: bool) -> wasmtime.Engine:
        if fuel not in self._engines:
            self._engines[fuel] = make_engine(*self._settings, fuel=fuel)
        return self._engines[fuel]

    def module(self, job: WorkerJob) -> tuple[wasmtime.Module, bool]:
        key = (job.sha256, job.fuel is not None)
        found = self._modules.get(key)
        if found is not None:
            self._modules.move_to_end(key)
            return found, False
        module = wasmtime.Module.from_file(self.engine(job.fuel is not None), job.path)
        self._modules[key] = module
        while len(self._modules) > MODULE_CACHE:
            self._modules.popitem(last=False)
        return module, True

    def run(self, job: WorkerJob, conn: Connection) -> WorkerResult:
        try:
            module, _ = self.module(job)
        except (wasmtime.WasmtimeError, OSError) as exc:
            return WorkerResult(1, "error", f"the module does not compile: {exc}")
        engine = self.engine(job.fuel is not None)
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=job.memory_bytes)
        if job.fuel is not None:
            store.set_fuel(job.fuel)
        store.set_epoch_deadline(1)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [job.name, *job.args]
        wasi.env = [list(kv) for kv in job.env]
        output = Output(conn)
        wasi.stdout_custom = lambda data: output.write("out", data)
        wasi.stderr_custom = lambda data: output.write("err", data)
        if job.inputs is not None:
            wasi.preopen_dir(job.inputs, "/inputs", False)
        if job.outputs is not None:
            wasi.preopen_dir(job.outputs, "/outputs", True)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        timer = threading.Timer(job.timeout_s, engine.increment_epoch) if job.timeout_s else None
        instance: wasmtime.Instance | None = None
        if timer is not None:
            timer.start()
        try:
            instance = linker.instantiate(store, module)
            start = instance.exports(store).get("_start")
            if not isinstance(start, wasmtime.Func):
                return WorkerResult(1, "error", "the module exports no _start function")
            start(store)
            result = WorkerResult(0, "exited")
        except wasmtime.ExitTrap as exc:
            result = WorkerResult(exc.code, "exited")
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                result = WorkerResult(-1, "timeout", "stopped at its duration")
            elif exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                result = WorkerResult(-1, "fuel", f"stopped at its instruction budget ({job.fuel} fuel)")
            else:
                result = WorkerResult(1, "trap", exc.message.splitlines()[0] if exc.message else "trap")
        except wasmtime.WasmtimeError as exc:
            result = WorkerResult(1, "error", str(exc).splitlines()[0])
        finally:
            if timer is not None:
                timer.cancel()
            output.close()
        return WorkerResult(result.exit_code, result.ending, result.detail, memory_bytes(instance, store))


def memory_bytes(instance: wasmtime.Instance | None, store: wasmtime.Store) -> int:
    if instance is None:
        return 0
    memory = instance.exports(store).get("memory")
    return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0


def watch_parent(pid: int) -> None:
    """End this worker when the daemon is gone (a module blocked in a host call never reads the pipe)."""
    while True:
        time.sleep(PARENT_CHECK_S)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def main(conn: Connection, parent_pid: int) -> None:
    """The worker's entry point: serve jobs until the parent closes the pipe (or dies)."""
    threading.Thread(target=watch_parent, args=(parent_pid,), daemon=True).start()
    settings, kind = probe_engine()
    runner = Runner(*settings)
    conn.send(("ready", kind))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "run":
                try:
                    result = runner.run(msg[1], conn)
                except Exception as exc:  # a bug here must end the job with a reason, not the worker
                    result = WorkerResult(1, "error", f"the WASM worker failed: {type(exc).__name__}: {exc}")
                conn.send(("done", result))
    finally:
        runner.close()


if __name__ == "__main__":
    import sys

    from dms.executor import wasm_worker  # the module's own name, so what it pickles unpickles in the daemon

    wasm_worker.main(Connection(int(sys.argv[1])), int(sys.argv[2]))
