"""WASM job figures: one small module end to end through two daemons, beside two floors.

An SP and a CP (real `nunet-dms` processes on loopback, p2p.heartbeat_s 2, otherwise default settings; the
CP has Docker too, so the same daemons run both kinds). The module does nothing (`_start` returns: the WASM
`true`); it is added to the SP's registry and reaches the CP with the first (warm-up) job. One job after
another: POST /api/v1/run/request-service, then `send-status` (fund, success) on an already open
/api/v1/run/deploy websocket, until the `job-completed` frame.

Floors, interleaved with it:
- the same module, already compiled, run in a fresh wasmtime Store in this process (Store, WASI config,
  linker, instantiate, `_start`): what running it costs at the least;
- the `busybox true` container job through the same two daemons (what the WASM job replaces).

Usage: .venv/bin/python bench/wasm.py [--jobs N] [--warm N] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import wasmtime
from common import append_results, header, load_note, median, p95
from jobs_setup import IMAGE, _daemon, _known, _onboard, _peer_id, pay_and_follow, request_quote

from dms.executor.base import ContainerSpec, LogChunk
from dms.executor.modules import ModuleStore
from dms.executor.wasm import WasmExecutor
from tests import wasm_modules as m
from tests.procs import DmsProcess, wait_for

TRUE_WAT = m.program("")
RES: dict[str, Any] = {"cpu_mhz": 100, "cores": 0.5, "memory_mb": 32}
FRAME_TIMEOUT_S = 60.0


def wasm_spec(sha: str) -> dict[str, Any]:
    return {"executor": "wasm", "module": sha, "resources": RES, "max_price": 10**18, "duration_s": 60}


def container_spec() -> dict[str, Any]:
    return {"image": IMAGE, "command": ["true"], "resources": RES, "max_price": 10**18, "duration_s": 60}


class Steps:
    """Time from the request to each milestone, per kind of job."""

    def __init__(self) -> None:
        self.at: dict[str, list[float]] = {}

    def add(self, name: str, t: float) -> None:
        self.at.setdefault(name, []).append(t)

    def medians_ms(self) -> dict[str, float]:
        return {k: median(v) * 1000 for k, v in self.at.items()}


async def executor_alone(binary: bytes, root: Path, n: int) -> list[float]:
    """dms's WASM executor in this process with a warm worker: the executor's own share of a job."""
    store = ModuleStore(root / "modules")
    ex = WasmExecutor(store, root / "work", log_batch_s=0.2)
    await ex.start()
    sha = await store.put_blob(binary)
    times = []

    async def sink(_: LogChunk) -> None:
        pass

    try:
        for i in range(n + 1):
            t0 = time.perf_counter()
            spec = ContainerSpec(job_id=f"x{i}", image=sha, kind="wasm", memory_mb=RES["memory_mb"], timeout_s=60)
            result = await ex.run(spec, sink)
            assert result.exit_code == 0, result
            times.append(time.perf_counter() - t0)
    finally:
        await ex.close()
    return times[1:]  # the first compiles the module in the worker


class Floor:
    """The module compiled once; each run in a fresh Store, as the executor's worker does."""

    def __init__(self, binary: bytes) -> None:
        self.engine = wasmtime.Engine()
        self.module = wasmtime.Module(self.engine, binary)

    def run(self) -> float:
        t0 = time.perf_counter()
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=RES["memory_mb"] * 2**20)
        store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        instance = linker.instantiate(store, self.module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        return time.perf_counter() - t0


async def one_job(
    s: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, url: str, spec: dict[str, Any], steps: Steps
) -> float:
    t0 = time.perf_counter()
    quote = await request_quote(s, url, spec)
    steps.add("quote", time.perf_counter() - t0)
    job_id = quote["job_id"]
    async for frame in pay_and_follow(ws, job_id, FRAME_TIMEOUT_S):
        if frame["action"] in ("job-submitted", "deployment-response", "job-completed"):
            steps.add(frame["action"], time.perf_counter() - t0)
        if frame["action"] == "job-completed":
            return time.perf_counter() - t0
        if frame["action"] in ("job-failed", "error"):
            raise RuntimeError(f"job {job_id}: {frame}")
    raise AssertionError("unreachable: pay_and_follow never ends")


def add_module(sp: DmsProcess, binary: bytes) -> str:
    import json
    import urllib.request

    req = urllib.request.Request(f"{sp.url}/api/v1/modules?name=true", data=binary, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.load(r)["sha256"])


async def measure(
    sp: DmsProcess, sha: str, floor: Floor, n: int, warm: int
) -> tuple[dict[str, list[float]], dict[str, Steps]]:
    times: dict[str, list[float]] = {"wasm": [], "floor": [], "container": []}
    steps = {"wasm": Steps(), "container": Steps()}
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        for _ in range(warm):
            await one_job(s, ws, sp.url, wasm_spec(sha), Steps())
            await one_job(s, ws, sp.url, container_spec(), Steps())
            floor.run()
        for i in range(n):
            order = ["wasm", "floor", "container"] if i % 2 == 0 else ["container", "floor", "wasm"]
            for step in order:
                if step == "floor":
                    times["floor"].append(floor.run())
                else:
                    spec = wasm_spec(sha) if step == "wasm" else container_spec()
                    times[step].append(await one_job(s, ws, sp.url, spec, steps[step]))
    return times, steps


def report(times: dict[str, list[float]], steps: dict[str, Steps], n: int, load: str) -> str:
    ms = {k: (median(v) * 1000, p95(v) * 1000) for k, v in times.items()}
    over = ms["wasm"][0] - ms["floor"][0]
    speedup = ms["container"][0] / ms["wasm"][0]
    return "\n".join(
        [
            header("WASM job latency: a no-op module from request to `job-completed`, SP and CP daemons"),
            "",
            f"Two nunet-dms processes on loopback (p2p.heartbeat_s 2), {n} sequential rounds after warm-ups, each"
            " round interleaving the three rows. WASM job: POST /api/v1/run/request-service until the"
            " `job-completed` frame on an open websocket; the module (`_start` returns) is in the CP's store"
            " after the first warm-up. Floor: the same module, compiled once, run in a fresh wasmtime Store in"
            " one process. Container job: `busybox true` through the same daemons. Resources asked:"
            f" {RES}. {load}",
            "",
            "| path | median | p95 |",
            "|---|---|---|",
            f"| wasmtime alone: fresh Store, instantiate, `_start` (floor) | {ms['floor'][0]:.2f} ms |"
            f" {ms['floor'][1]:.2f} ms |",
            f"| dms's WASM executor alone, warm worker (pipe, log batching, result) | {ms['executor'][0]:.1f} ms |"
            f" {ms['executor'][1]:.1f} ms |",
            f"| nunet-dms: WASM job, request-service to `job-completed` | {ms['wasm'][0]:.0f} ms |"
            f" {ms['wasm'][1]:.0f} ms |",
            f"| nunet-dms: `busybox true` container job, same path | {ms['container'][0]:.0f} ms |"
            f" {ms['container'][1]:.0f} ms |",
            f"| WASM job over the floor (difference of medians) | {over:.0f} ms | |",
            f"| container job / WASM job (ratio of medians) | {speedup:.1f}x | |",
            "",
            "Goals: at most 30 ms over the floor; at least 5 times faster end to end than the container job.",
            "",
            "Where the time goes (medians, from the request; client clocks):",
            "",
            "| milestone | WASM job | container job |",
            "|---|---|---|",
            *(
                f"| {k} | {w.get(k, 0):.0f} ms | {c.get(k, 0):.0f} ms |"
                for w, c in [(steps["wasm"].medians_ms(), steps["container"].medians_ms())]
                for k in ("quote", "job-submitted", "deployment-response", "job-completed")
            ),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    load = load_note()
    binary = m.wasm(TRUE_WAT)
    with tempfile.TemporaryDirectory(prefix="dms-bench-wasm-") as tmp:
        root = Path(tmp)
        cp = _daemon(root, "cp")
        sp = None
        try:
            _onboard(cp)
            cp_addr = cp.get("/api/v1/peers/self")["addrs"][0]
            sp = _daemon(root, "sp", [cp_addr])
            _onboard(sp, share=0.2)
            cp_id = _peer_id(cp)
            wait_for(lambda: cp_id in _known(sp), 30, "the SP sees the CP")
            sha = add_module(sp, binary)
            times, steps = asyncio.run(measure(sp, sha, Floor(binary), args.jobs, args.warm))
            times["executor"] = asyncio.run(executor_alone(binary, root / "alone", args.jobs))
        finally:
            for d in (sp, cp):
                if d is not None:
                    d.stop()
    text = report(times, steps, args.jobs, load)
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
