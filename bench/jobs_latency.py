"""(a) Job latency: one small container job after another through two daemons, interleaved with the same
container run directly through the Docker API (bench/jobs.py --part latency)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiodocker
import aiohttp
from common import header, load_note, median, p95
from jobs_setup import (
    FRAME_TIMEOUT_S,
    HEARTBEAT_S,
    LATENCY_RES,
    EngineEvents,
    _daemon,
    _floor_run,
    _known,
    _onboard,
    _peer_id,
    _store_costs,
    job_spec,
    pay_and_follow,
    request_quote,
)  # fmt: skip

from tests.procs import DmsProcess, wait_for

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
    quote = await request_quote(s, url, job_spec(LATENCY_RES))
    t.quote = time.time()
    job_id = quote["job_id"]
    async for frame in pay_and_follow(ws, job_id, FRAME_TIMEOUT_S):
        t.frames.setdefault(frame["action"], time.time())
        if frame["action"] == "error":
            raise RuntimeError(f"websocket error for job {job_id}: {frame}")
        if frame["action"] in ("job-completed", "job-failed"):
            t.end_action, t.end_message = frame["action"], str(frame.get("message", ""))
            return job_id, t
    raise AssertionError("unreachable: pay_and_follow never ends")


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
            wait_for(lambda: cp_id in _known(sp_ref), 30, "the SP sees the CP")
            print(f"latency: {warm} warm-up + {n} jobs", file=sys.stderr, flush=True)
            r = asyncio.run(_latency(sp, n, warm))
            store_w, store_r = asyncio.run(_store_costs())
        finally:
            for p in (sp, cp):
                if p is not None:
                    with contextlib.suppress(Exception):
                        p.terminate()
                    p.stop()  # with what the daemon left on the engine
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
            "exited -> `job-completed` (CP: wait, log stream end, inspect, store, result event; SP: store, frame; "
            "the container is removed after it) / floor: exited -> removed (wait, delete)",
            seg("engine:die", "job-completed"),
            fseg("engine:die", "end"),
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
        "dms/store/direct.py: a write is one hop to its thread, a point read runs on the event loop). A `true` job",
        "makes about 10 write transactions (SP 4: quote, paid, submitted, running, end; CP 6: admit with its event,",
        "hold, starting, running, end, release) and about 10 reads; every frame and CP event is still stored",
        "before it is sent.",
        "",
    ]
    return "\n".join(lines)
