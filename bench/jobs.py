"""Job figures: end-to-end latency of one small container job through two daemons, and throughput of 50 at once.

(a) Latency. An SP and a CP (real `nunet-dms` processes on loopback, p2p.heartbeat_s 2, otherwise default
settings; onboarded as in tests/e2e `pair`). One job after another: POST /api/v1/run/request-service, then
`send-status` (fund, success) on an already open /api/v1/run/deploy websocket, until the `job-completed` frame.
The job is `busybox true` (command ["true"]). The floor, interleaved with it: the same container run directly
through the Docker API (aiodocker: create with dms.executor.docker.container_config, start, wait, delete).
Where the time goes: the client's timestamps of the quote and of each frame, beside the Docker engine's own
event times (create, start, die, destroy) of the job's container.

(b) Throughput. One SP and two CPs, each CP onboarded with room for 25 of the jobs (CPU is the binding
reservation: 25 x 50 MHz). 50 jobs requested at once; jobs/s from the first request to the last job's end,
beside the Docker engine running the same 50 containers alone, concurrently through aiodocker.

Usage: .venv/bin/python bench/jobs.py [--part latency|burst|all] [--jobs N] [--rounds N] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from common import append_results, header, load_note, median, p95

from dms.app import instance_name
from dms.executor.base import ContainerSpec
from dms.executor.docker import LABEL_INSTANCE, LABEL_JOB, container_config
from tests.procs import DmsProcess

IMAGE = "dms-test/busybox:1"
HEARTBEAT_S = 2.0
PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
FLOOR_INSTANCE = "bench-floor"
LATENCY_RES: dict[str, Any] = {"cpu_mhz": 100, "cores": 0.5, "memory_mb": 32}
BURST_RES: dict[str, Any] = {"cpu_mhz": 50, "cores": 0.5, "memory_mb": 16}
BURST_JOBS = 50
PER_CP = 25
PER_CP_MHZ = PER_CP * 50
FRAME_TIMEOUT_S = 120.0
FUND = {"transaction_type": "fund", "transaction_status": "success"}


def job_spec(res: dict[str, Any]) -> dict[str, Any]:
    return {"image": IMAGE, "command": ["true"], "resources": res, "max_price": 10**18, "duration_s": 60}


def floor_config(job_id: str, res: dict[str, Any]) -> dict[str, Any]:
    spec = ContainerSpec(
        job_id=job_id, image=IMAGE, command=("true",), cores=res["cores"], memory_mb=res["memory_mb"], timeout_s=60
    )
    return container_config(spec, FLOOR_INSTANCE)


# ----- daemons -----


def _post(d: DmsProcess, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        d.url + "/api/v1" + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _onboard(d: DmsProcess, cpu: int | None = None, share: float = 0.5) -> None:
    """Onboard `d`: `share` of the machine, or exactly `cpu` MHz with the smallest memory allowed (10%)."""
    total = d.get("/api/v1/onboarding/provisioned")
    if cpu is None:
        cpu, memory = int(total["cpu"] * share), int(total["memory"] * share)
    else:
        memory = -(-total["memory"] // 10)
    body = {"cpu": cpu, "memory": memory, "channel": "nunet-test", "payment_addr": PAYOUT, "ntx_price": 7}
    _post(d, "/onboarding/onboard", body)


def _known(d: DmsProcess) -> dict[str, dict[str, Any]]:
    return {p["peer_id"]: p["capacity"] for p in d.get("/api/v1/peers/dht/dump")}


def _wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"not within {timeout} s: {what}")


def _peer_id(d: DmsProcess) -> str:
    return str(d.get("/api/v1/peers/self")["peer_id"])


def _daemon(root: Path, name: str, bootstrap: list[str] | None = None) -> DmsProcess:
    p2p: dict[str, Any] = {"heartbeat_s": HEARTBEAT_S}
    if bootstrap:
        p2p["bootstrap_peers"] = bootstrap
    return DmsProcess(root, name, p2p=p2p).start(60)


# ----- docker helpers -----


async def _floor_run(docker: aiodocker.Docker, job_id: str, res: dict[str, Any]) -> tuple[float, float]:
    """(wall start, wall end) of create, start, wait, delete."""
    t0 = time.time()
    container = await docker.containers.create(floor_config(job_id, res), name=f"bench-{job_id}")
    try:
        await container.start()
        await container.wait()
    finally:
        await container.delete(force=True)
    return t0, time.time()


class EngineEvents:
    """The engine's container events (create, start, die, destroy) of labelled jobs, followed live while the
    block runs: the engine keeps only its last few hundred events, so asking afterwards loses a busy run's start.

    `times`: job id -> {action: wall time}.
    """

    def __init__(self) -> None:
        self.times: dict[str, dict[str, float]] = {}
        self._docker = aiodocker.Docker()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EngineEvents:
        following = asyncio.Event()
        self._task = asyncio.create_task(self._follow(following))
        await asyncio.wait_for(following.wait(), 10)
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.sleep(0.5)  # the last events are on their way
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await self._task
        await self._docker.close()

    async def _follow(self, following: asyncio.Event) -> None:
        params = {"since": f"{time.time():.3f}", "filters": json.dumps({"type": ["container"], "label": [LABEL_JOB]})}
        async with self._docker._query("events", params=params, timeout=None) as resp:
            following.set()
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                job = ev.get("Actor", {}).get("Attributes", {}).get(LABEL_JOB)
                if job:
                    self.times.setdefault(job, {}).setdefault(ev["Action"], ev["timeNano"] / 1e9)


def _peak_concurrency(times: dict[str, dict[str, float]], jobs: list[str]) -> int:
    """The most of `jobs`' containers that existed at once (engine create to destroy)."""
    edges: list[tuple[float, int]] = []
    for jid in jobs:
        ev = times.get(jid, {})
        if "create" in ev:
            edges += [(ev["create"], 1), (ev.get("destroy", math.inf), -1)]
    peak = live = 0
    for _, step in sorted(edges):
        live += step
        peak = max(peak, live)
    return peak


async def _store_costs(n: int = 200) -> tuple[float, float]:
    """Median seconds of one store write transaction (EventLog.add) and one read (JobStore.get), here."""
    from dms.store.db import Store
    from dms.store.jobs import EventLog, JobStore
    from dms.store.models import CPJobRow

    with tempfile.TemporaryDirectory(prefix="dms-bench-store-") as d:
        store = Store(Path(d))
        await store.open()
        try:
            jobs, events = JobStore(store, CPJobRow), EventLog(store)
            await jobs.create(job_id="j", sp_peer_id="p", state="admitted", spec={})
            writes, reads = [], []
            for i in range(n):
                t = time.perf_counter()
                await events.add("cp", "j", i + 1, "status", {"state": "running"})
                writes.append(time.perf_counter() - t)
                t = time.perf_counter()
                await jobs.get("j")
                reads.append(time.perf_counter() - t)
        finally:
            await store.close()
    return median(writes), median(reads)


async def _remove_leftovers(instances: list[str]) -> int:
    removed = 0
    async with aiodocker.Docker() as docker:
        for inst in instances:
            for c in await docker.containers.list(
                all=True, filters=json.dumps({"label": [f"{LABEL_INSTANCE}={inst}"]})
            ):
                with contextlib.suppress(aiodocker.DockerError):
                    await c.delete(force=True)
                    removed += 1
    return removed


# ----- (a) latency -----


@dataclass
class JobTimes:
    """Wall times of one daemon job, as the client and the engine saw them."""

    post: float
    quote: float = 0.0
    frames: dict[str, float] = field(default_factory=dict)
    engine: dict[str, float] = field(default_factory=dict)
    end_action: str = ""
    end_message: str = ""

    @property
    def total(self) -> float:
        return self.frames.get(self.end_action, self.post) - self.post


async def _one_job(s: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, url: str) -> tuple[str, JobTimes]:
    t = JobTimes(post=time.time())
    async with s.post(url + "/api/v1/run/request-service", json=job_spec(LATENCY_RES)) as r:
        quote = await r.json()
        if r.status != 200:
            raise RuntimeError(f"request-service answered {r.status}: {quote}")
    t.quote = time.time()
    job_id = quote["job_id"]
    await ws.send_json({"action": "send-status", "job_id": job_id, "message": FUND})
    while True:
        frame = await ws.receive_json(timeout=FRAME_TIMEOUT_S)
        if frame.get("job_id") not in (job_id, None):
            continue
        t.frames.setdefault(frame["action"], time.time())
        if frame["action"] == "error":
            raise RuntimeError(f"websocket error for job {job_id}: {frame}")
        if frame["action"] in ("job-completed", "job-failed"):
            t.end_action, t.end_message = frame["action"], str(frame.get("message", ""))
            return job_id, t


@dataclass
class Latency:
    jobs: list[JobTimes]
    floor: list[tuple[float, float]]
    floor_engine: list[dict[str, float]]


async def _latency(sp: DmsProcess, n: int, warm: int) -> Latency:
    jobs: list[JobTimes] = []
    floor: list[tuple[float, float]] = []
    job_ids: list[str] = []
    floor_ids: list[str] = []
    async with (
        EngineEvents() as engine,
        aiodocker.Docker() as docker,
        aiohttp.ClientSession() as s,
        s.ws_connect(sp.url + "/api/v1/run/deploy") as ws,
    ):
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        for i in range(warm + n):  # interleaved, alternating which goes first
            order = ["daemon", "floor"] if i % 2 == 0 else ["floor", "daemon"]
            for which in order:
                if which == "daemon":
                    jid, t = await _one_job(s, ws, sp.url)
                    if i >= warm:
                        jobs.append(t)
                        job_ids.append(jid)
                else:
                    fid = f"floor-a-{i}-{time.time_ns()}"
                    span = await _floor_run(docker, fid, LATENCY_RES)
                    if i >= warm:
                        floor.append(span)
                        floor_ids.append(fid)
    events = engine.times
    for t, jid in zip(jobs, job_ids, strict=True):
        t.engine = events.get(jid, {})
    return Latency(jobs, floor, [events.get(f, {}) for f in floor_ids])


def _seg(xs: list[float]) -> str:
    return f"{median(xs) * 1000:.0f} ms" if xs else "-"


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def latency_section(n: int, warm: int) -> str:
    note = load_note()
    with tempfile.TemporaryDirectory(prefix="dms-bench-jobs-") as d:
        root = Path(d)
        cp = _daemon(root, "cp")
        sp: DmsProcess | None = None
        try:
            _onboard(cp, share=0.5)
            cp_id = _peer_id(cp)
            cp_addr = cp.get("/api/v1/peers/self")["addrs"][0]
            sp = _daemon(root, "sp", [cp_addr])
            _onboard(sp, share=0.2)
            sp_ref = sp
            _wait("the SP sees the CP", lambda: cp_id in _known(sp_ref), 30)
            print(f"latency: {warm} warm-up + {n} jobs", file=sys.stderr, flush=True)
            r = asyncio.run(_latency(sp, n, warm))
            store_w, store_r = asyncio.run(_store_costs())
        finally:
            for p in (sp, cp):
                if p is not None:
                    with contextlib.suppress(Exception):
                        p.terminate()
                    p.stop()
            asyncio.run(_remove_leftovers([instance_name(root / "cp-data"), instance_name(root / "sp-data")]))
    failed = [t for t in r.jobs if t.end_action != "job-completed"]
    ok = [t for t in r.jobs if t.end_action == "job-completed"]
    dms = [t.total for t in ok]
    bare = [b - a for a, b in r.floor]
    dms_med, bare_med = median(dms), median(bare)

    def seg(a: str, b: str) -> list[float]:
        out = []
        for t in ok:
            marks = {"post": t.post, "quote": t.quote, **t.frames, **{f"engine:{k}": v for k, v in t.engine.items()}}
            if a in marks and b in marks:
                out.append(marks[b] - marks[a])
        return out

    def fseg(a: str, b: str) -> list[float]:
        out = []
        for (start, end), ev in zip(r.floor, r.floor_engine, strict=True):
            marks = {"post": start, "end": end, **{f"engine:{k}": v for k, v in ev.items()}}
            if a in marks and b in marks:
                out.append(marks[b] - marks[a])
        return out

    rows = [
        ("POST request-service -> quote (SP: match, store)", seg("post", "quote"), []),
        ("quote -> `job-submitted` (send-status, SP: paid, frame)", seg("quote", "job-submitted"), []),
        (
            "`job-submitted` -> `deployment-response` (SP dials, CP admits: image check, reserve, store, advert)",
            seg("job-submitted", "deployment-response"),
            [],
        ),
        (
            "`deployment-response` -> container created (CP: state, image check, create; floor: the create call)",
            seg("deployment-response", "engine:create"),
            fseg("post", "engine:create"),
        ),
        ("created -> started", seg("engine:create", "engine:start"), fseg("engine:create", "engine:start")),
        ("started -> exited (`true` runs)", seg("engine:start", "engine:die"), fseg("engine:start", "engine:die")),
        (
            "exited -> removed (CP: wait, log stream end, inspect, delete)",
            seg("engine:die", "engine:destroy"),
            fseg("engine:die", "engine:destroy"),
        ),
        (
            "removed -> `job-completed` (CP: store, release, result event, advert; SP: store, frame)",
            seg("engine:destroy", "job-completed"),
            fseg("engine:destroy", "end"),
        ),
    ]
    lines = [
        header("Job latency: `busybox true` from request to `job-completed`, SP and CP daemons"),
        "",
        f"Two nunet-dms processes on loopback (p2p.heartbeat_s {HEARTBEAT_S:g}, otherwise default settings), "
        f"{n} sequential jobs after {warm} warm-ups,",
        "each interleaved with the floor: the same container (same HostConfig from container_config) created,",
        "started, waited for and deleted directly through the Docker API (aiodocker). Time: POST",
        "/api/v1/run/request-service until the `job-completed` frame on an already open websocket.",
        f"Resources asked: {LATENCY_RES}. {note}",
        "",
        "| path | median | p95 |",
        "|---|---|---|",
        f"| Docker API alone: create, start, wait, delete (floor) | {bare_med * 1000:.0f} ms "
        f"| {p95(bare) * 1000:.0f} ms |",
        f"| nunet-dms: request-service to `job-completed` | {dms_med * 1000:.0f} ms | {p95(dms) * 1000:.0f} ms |",
        f"| overhead (difference of medians) | {(dms_med - bare_med) * 1000:.0f} ms | |",
        f"| ratio | {dms_med / bare_med:.1f}x | |",
        "",
        "Goal (issue 12, item 7): overhead at most 25 ms median.",
    ]
    if failed:
        why = Counter(f"{t.end_action}: {t.end_message}" for t in failed)
        lines += [
            "",
            f"{len(failed)} of {len(r.jobs)} jobs did not complete: "
            + "; ".join(f"{k} (x{v})" for k, v in why.items()),
        ]
    lines += [
        "",
        "Where the time goes (medians of each step; client timestamps of the quote and the frames, engine event",
        "times of the job's container; the floor's steps counted the same way from its own API calls):",
        "",
        "| step | nunet-dms | Docker API alone |",
        "|---|---|---|",
        *[f"| {name} | {_seg(d)} | {_seg(f)} |" for name, d, f in rows],
        f"| total | {_seg(dms)} | {_seg(bare)} |",
        "",
        f"For scale, measured in the same run: one store write transaction (EventLog.add) takes "
        f"{store_w * 1000:.2f} ms here, one read (JobStore.get) {store_r * 1000:.2f} ms (the store's fast path,",
        "dms/store/direct.py: one hop to its thread). A `true` job makes about 12 write transactions (SP 5: quote,",
        "paid, submitted, running, end; CP 7: admit, hold, admitted, starting, running, end, release) and about 10",
        "reads; every frame and CP event is still stored before it is sent.",
        "",
    ]
    return "\n".join(lines)


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
            cp1 = _daemon(root, "cp1")
            procs.append(cp1)
            _onboard(cp1, cpu=PER_CP_MHZ)
            cp1_addr = cp1.get("/api/v1/peers/self")["addrs"][0]
            cp2 = _daemon(root, "cp2", [cp1_addr])
            procs.append(cp2)
            _onboard(cp2, cpu=PER_CP_MHZ)
            sp = _daemon(root, "sp", [cp1_addr])
            procs.append(sp)
            _onboard(sp, share=0.2)
            cps = {_peer_id(cp1): "cp1", _peer_id(cp2): "cp2"}
            full = PER_CP_MHZ

            def all_free() -> bool:
                known = _known(sp)
                return all(known.get(pid, {}).get("cpu_mhz") == full for pid in cps)

            for r in range(rounds):
                _wait("the SP sees both CPs with all their capacity free", all_free, 60)
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
            names = [instance_name(root / f"{n}-data") for n in ("cp1", "cp2", "sp")] + [FLOOR_INSTANCE]
            asyncio.run(_remove_leftovers(names))
    dms_tput = [b.completed / b.seconds for b in results]
    floor_tput = [(BURST_JOBS - b.floor_failed) / b.floor_seconds for b in results]
    dms_med, floor_med = median(dms_tput), median(floor_tput)
    failed_total: Counter[str] = Counter()
    for b in results:
        failed_total.update(b.failed)
    lines = [
        header(f"Job throughput: {BURST_JOBS} `busybox true` jobs at once, one SP and two CPs"),
        "",
        f"Three nunet-dms processes on loopback (p2p.heartbeat_s {HEARTBEAT_S:g}); each CP onboarded with "
        f"{full} MHz (room for {PER_CP} jobs of {BURST_RES['cpu_mhz']} MHz) and the smallest memory allowed.",
        f"{BURST_JOBS} request-service calls at once, each followed by its send-status on one websocket; throughput",
        "= completed jobs / (last end frame - first request). Floor: the Docker engine alone running the same",
        f"{BURST_JOBS} containers concurrently through aiodocker (create, start, wait, delete). "
        f"Resources: {BURST_RES}.",
        f"Median of {rounds} interleaved rounds. {note}",
        "",
        "| path | wall time (median) | throughput (median) |",
        "|---|---|---|",
        f"| Docker API alone (floor) | {median([b.floor_seconds for b in results]):.2f} s | {floor_med:.1f} jobs/s |",
        f"| nunet-dms, SP -> 2 CPs | {median([b.seconds for b in results]):.2f} s | {dms_med:.1f} jobs/s |",
        f"| ratio | | {dms_med / floor_med:.2f}x of the floor |",
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["latency", "burst", "all"], default="all")
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    sections = []
    if args.part in ("latency", "all"):
        sections.append(latency_section(args.jobs, args.warm))
        print(sections[-1], flush=True)
    if args.part in ("burst", "all"):
        sections.append(burst_section(args.rounds))
        print(sections[-1], flush=True)
    if args.write:
        for text in sections:
            append_results(text)


if __name__ == "__main__":
    main()
