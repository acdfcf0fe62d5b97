"""(b) Job throughput: 50 small container jobs at once over one SP and two CPs, interleaved with the Docker
engine running the same containers alone (bench/jobs.py --part burst)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import aiohttp
from common import header, load_note, median, p95
from jobs_setup import (
    BURST_JOBS,
    BURST_RES,
    FLOOR_INSTANCE,
    FRAME_TIMEOUT_S,
    FUND,
    HEARTBEAT_S,
    PER_CP,
    PER_CP_MHZ,
    EngineEvents,
    _floor_run,
    _peak_concurrency,
    _peer_id,
    _read_from,
    all_free,
    burst_trio,
    job_spec,
)  # fmt: skip

from tests.procs import DmsProcess, reap, wait_for

# ----- (b) burst -----


@dataclass
class Burst:
    seconds: float
    completed: int
    failed: Counter[str]
    per_cp: Counter[str]
    floor_seconds: float
    floor_failed: int
    refused: int
    peaks: dict[str, int]
    """Per CP: the most of its job containers that existed at once."""
    """Offers a full CP refused (the SP then offered the job to the other CP)."""


async def _burst_daemons(sp: DmsProcess, n: int) -> tuple[float, int, Counter[str], list[str]]:
    """(seconds from the first request to the last end, completed, failures by reason, job ids)."""
    failed: Counter[str] = Counter()
    ends: dict[str, tuple[float, str, str]] = {}
    submitted: list[str] = []
    lock = asyncio.Lock()
    all_ended = asyncio.Event()
    submitting = True

    def check_all_ended() -> None:
        if not submitting and all(j in ends for j in submitted):
            all_ended.set()

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"

        async def reader() -> None:
            while True:
                frame = await ws.receive_json(timeout=FRAME_TIMEOUT_S)
                action, jid = frame["action"], frame.get("job_id")
                if action in ("job-completed", "job-failed") and jid:
                    ends[jid] = (time.perf_counter(), action, str(frame.get("message", "")))
                    check_all_ended()
                elif action == "error":
                    failed[f"websocket error: {frame.get('message')}"] += 1

        async def one() -> None:
            async with s.post(sp.url + "/api/v1/run/request-service", json=job_spec(BURST_RES)) as r:
                body = await r.json()
            if r.status != 200:
                failed[f"request-service {r.status}: {body.get('error', body)}"[:200]] += 1
                return
            submitted.append(body["job_id"])
            async with lock:
                await ws.send_json({"action": "send-status", "job_id": body["job_id"], "message": FUND})

        read = asyncio.create_task(reader())
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        submitting = False
        check_all_ended()
        waiter = asyncio.create_task(all_ended.wait())
        await asyncio.wait([waiter, read], timeout=FRAME_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, read):  # the reader ends early only on an error: the missing ends count as failures
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    completed = 0
    last = t0
    for jid in submitted:
        if jid not in ends:
            failed["no end frame within the timeout"] += 1
            continue
        at, action, message = ends[jid]
        last = max(last, at)
        if action == "job-completed":
            completed += 1
        else:
            failed[f"job-failed: {message}"[:200]] += 1
    return last - t0, completed, failed, submitted


async def _burst_followed(
    sp: DmsProcess, n: int
) -> tuple[tuple[float, int, Counter[str], list[str]], dict[str, dict[str, float]]]:
    async with EngineEvents() as engine:
        result = await _burst_daemons(sp, n)
    return result, engine.times


async def _burst_floor(n: int) -> tuple[float, int]:
    async with aiodocker.Docker() as docker:
        stamp = time.time_ns()
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(_floor_run(docker, f"floor-b-{stamp}-{i}", BURST_RES) for i in range(n)), return_exceptions=True
        )
        seconds = time.perf_counter() - t0
    return seconds, sum(1 for x in results if isinstance(x, BaseException))


def burst_section(rounds: int) -> str:
    results: list[Burst] = []
    note = load_note()
    with tempfile.TemporaryDirectory(prefix="dms-bench-burst-") as d:
        root = Path(d)
        procs: list[DmsProcess] = []
        try:
            sp, cp1, cp2 = burst_trio(root, procs)
            cps = {_peer_id(cp1): "cp1", _peer_id(cp2): "cp2"}
            for r in range(rounds):
                wait_for(functools.partial(all_free, sp, cps), 60, "the SP sees both CPs with all their capacity free")
                print(f"burst: round {r + 1} of {rounds}", file=sys.stderr, flush=True)
                log_at = {c: c.log_path.stat().st_size for c in (cp1, cp2)}
                floor_s, floor_failed = asyncio.run(_burst_floor(BURST_JOBS))
                (seconds, completed, failed, job_ids), times = asyncio.run(_burst_followed(sp, BURST_JOBS))
                per_cp: Counter[str] = Counter()
                by_cp: dict[str, list[str]] = {}
                for jid in job_ids:
                    with contextlib.suppress(Exception):
                        name = cps.get(str(sp.get(f"/api/v1/run/jobs/{jid}")["compute_provider"]), "?")
                        per_cp[name] += 1
                        by_cp.setdefault(name, []).append(jid)
                peaks = {name: _peak_concurrency(times, js) for name, js in sorted(by_cp.items())}
                refused = sum(_read_from(c.log_path, at).count("refused job") for c, at in log_at.items())
                results.append(Burst(seconds, completed, failed, per_cp, floor_s, floor_failed, refused, peaks))
                print(f"  {results[-1]}", file=sys.stderr, flush=True)
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    p.terminate()
                p.stop()
            reap(FLOOR_INSTANCE)  # the daemons' leftovers went with `stop()`
    dms_tput = [b.completed / b.seconds for b in results]
    floor_tput = [(BURST_JOBS - b.floor_failed) / b.floor_seconds for b in results]
    dms_med, floor_med = median(dms_tput), median(floor_tput)
    ratios = [d / f for d, f in zip(dms_tput, floor_tput, strict=True)]
    floors, dms_times = [b.floor_seconds for b in results], [b.seconds for b in results]
    failed_total: Counter[str] = Counter()
    for b in results:
        failed_total.update(b.failed)
    lines = [
        header(f"Job throughput: {BURST_JOBS} `busybox true` jobs at once, one SP and two CPs"),
        "",
        f"Three nunet-dms processes on loopback (p2p.heartbeat_s {HEARTBEAT_S:g}); each CP onboarded with "
        f"{PER_CP_MHZ} MHz (room for {PER_CP} jobs of {BURST_RES['cpu_mhz']} MHz) and the smallest memory allowed.",
        f"{BURST_JOBS} request-service calls at once, each followed by its send-status on one websocket; throughput",
        "= completed jobs / (last end frame - first request). Floor: the Docker engine alone running the same",
        f"{BURST_JOBS} containers concurrently through aiodocker (create, start, wait, delete). "
        f"Resources: {BURST_RES}.",
        f"Median of {rounds} interleaved rounds. {note}",
        "",
        "| path | wall time (median) | wall time (p95) | throughput (median) |",
        "|---|---|---|---|",
        f"| Docker API alone (floor) | {median(floors):.2f} s | {p95(floors):.2f} s | {floor_med:.1f} jobs/s |",
        f"| nunet-dms, SP -> 2 CPs | {median(dms_times):.2f} s | {p95(dms_times):.2f} s | {dms_med:.1f} jobs/s |",
        f"| ratio | | | {dms_med / floor_med:.2f}x of the floor |",
        "",
        f"Per round, dms's throughput over the floor's of the same round: median {median(ratios):.2f}x, the worst "
        f"5 % (p95 of the shortfall) {1 - p95([1 - r for r in ratios]):.2f}x, lowest {min(ratios):.2f}x.",
        "",
        "Per round: "
        + "; ".join(
            f"{b.completed}/{BURST_JOBS} completed in {b.seconds:.2f} s ("
            + ", ".join(f"{k} {v}" for k, v in sorted(b.per_cp.items()))
            + f"; at most {', '.join(f'{k} {v}' for k, v in b.peaks.items())} containers at once"
            + f"; {b.refused} offers refused by a full CP and moved to the other), floor {b.floor_seconds:.2f} s"
            for b in results
        )
        + ".",
    ]
    if failed_total:
        lines += ["", "Failures: " + "; ".join(f"{k} (x{v})" for k, v in failed_total.most_common()) + "."]
    else:
        lines += ["", "No job failed."]
    lines.append("")
    return "\n".join(lines)
