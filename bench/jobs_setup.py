"""What the job benchmarks share (bench/jobs.py): the daemons, the job, the floor's container run through the
Docker API, the engine's own event times, the store's costs, and the leftovers' removal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from common import median

from dms.executor.base import ContainerSpec
from dms.executor.docker import LABEL_JOB, container_config
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


async def request_quote(s: aiohttp.ClientSession, url: str, spec: dict[str, Any]) -> dict[str, Any]:
    """POST request-service: the quote (RuntimeError with the answer when it is not 200)."""
    async with s.post(url + "/api/v1/run/request-service", json=spec) as r:
        quote: dict[str, Any] = await r.json()
        if r.status != 200:
            raise RuntimeError(f"request-service answered {r.status}: {quote}")
    return quote


async def pay_and_follow(
    ws: aiohttp.ClientWebSocketResponse, job_id: str, timeout_s: float
) -> AsyncIterator[dict[str, Any]]:
    """Report the job's payment (send-status fund success), then its frames as they come, for ever (the
    caller stops); another job's frames are skipped."""
    await ws.send_json({"action": "send-status", "job_id": job_id, "message": FUND})
    while True:
        frame: dict[str, Any] = await ws.receive_json(timeout=timeout_s)
        if frame.get("job_id") in (job_id, None):
            yield frame


def _known(d: DmsProcess) -> dict[str, dict[str, Any]]:
    return {p["peer_id"]: p["capacity"] for p in d.get("/api/v1/peers/dht/dump")}


def _peer_id(d: DmsProcess) -> str:
    return str(d.get("/api/v1/peers/self")["peer_id"])


def _daemon(root: Path, name: str, bootstrap: list[str] | None = None, **sections: dict[str, Any]) -> DmsProcess:
    """A started daemon; `sections`: more of its config (payment, ...)."""
    p2p: dict[str, Any] = {"heartbeat_s": HEARTBEAT_S}
    if bootstrap:
        p2p["bootstrap_peers"] = bootstrap
    return DmsProcess(root, name, None, p2p=p2p, **sections).start(60)


def burst_trio(
    root: Path, procs: list[DmsProcess], prefix: str = "", **sections: dict[str, Any]
) -> tuple[DmsProcess, DmsProcess, DmsProcess]:
    """(SP, CP, CP) for a burst, connected, each CP onboarded with room for PER_CP jobs; each daemon goes into
    `procs` as soon as it started (the caller stops them, even when a later one fails)."""
    cp1 = _daemon(root, f"{prefix}cp1", None, **sections)
    procs.append(cp1)
    _onboard(cp1, cpu=PER_CP_MHZ)
    addr = cp1.get("/api/v1/peers/self")["addrs"][0]
    cp2 = _daemon(root, f"{prefix}cp2", [addr], **sections)
    procs.append(cp2)
    _onboard(cp2, cpu=PER_CP_MHZ)
    sp = _daemon(root, f"{prefix}sp", [addr], **sections)
    procs.append(sp)
    _onboard(sp, share=0.2)
    return sp, cp1, cp2


def all_free(sp: DmsProcess, cp_ids: Iterable[str]) -> bool:
    """Whether the SP sees each of these CPs with all its capacity free (the previous round's jobs released)."""
    known = _known(sp)
    return all(known.get(pid, {}).get("cpu_mhz") == PER_CP_MHZ for pid in cp_ids)


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


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")
