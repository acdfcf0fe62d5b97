"""One writer per job against two real daemons (issue 12): dashboards racing on one job over real
websockets, recovery of every live job after an SP restart whatever the number of rows, quotes that expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.nodes import cp_and_sp
from tests.e2e.test_network_and_jobs import job, removed
from tests.procs import DmsProcess, post, wait_for

TERMINAL = ("job-completed", "job-failed")
QUOTE_TTL_S = 12


@pytest.fixture
def pair(dms_process: Callable[..., DmsProcess]) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    yield cp_and_sp(dms_process, sp={"job": {"quote_ttl_s": QUOTE_TTL_S}})


async def dashboard(ws: aiohttp.ClientWebSocketResponse, job_id: str) -> list[dict[str, Any]]:
    """Pay for the job, then read every frame through the job's end."""
    status = {"transaction_type": "fund", "transaction_status": "success"}
    await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})
    frames = []
    while True:
        frame = await ws.receive_json(timeout=60)
        frames.append(frame)
        if frame["action"] in TERMINAL:
            return frames


async def test_two_dashboards_pay_for_one_job_at_once(pair: tuple[DmsProcess, DmsProcess]) -> None:
    _, sp = pair
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            job_id = post(sp, "/run/request-service", job("echo ran"))["job_id"]
            url = sp.url + "/api/v1/run/deploy"
            async with s.ws_connect(url) as a, s.ws_connect(url) as b:
                assert (await a.receive_json(timeout=10))["action"] == "connected"
                assert (await b.receive_json(timeout=10))["action"] == "connected"
                seen = await asyncio.gather(dashboard(a, job_id), dashboard(b, job_id))
            errors = [f for frames in seen for f in frames if f["action"] == "error"]
            assert len(errors) == 1, errors  # the loser is told why...
            assert "awaiting payment" in errors[0]["message"] or "already being checked" in errors[0]["message"]
            for frames in seen:  # ...and both see the one run, with one terminal frame each
                job_frames = [f for f in frames if f["action"] != "error"]
                actions = [f["action"] for f in job_frames]
                assert actions.count("job-submitted") == 1 and actions[-1] == "job-completed", actions
                assert sum(a in TERMINAL for a in actions) == 1
            assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "completed"
            await removed(job_id)


async def test_restart_recovers_every_live_job_and_quotes_expire(pair: tuple[DmsProcess, DmsProcess]) -> None:
    """A running job older than 200+ unpaid quotes is re-attached after an SP restart; the quotes expire."""
    _, sp = pair
    spec = job("echo first; sleep 6; echo second")
    job_id = post(sp, "/run/request-service", spec)["job_id"]
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        status = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})
        while (await ws.receive_json(timeout=30))["action"] != "log-stream-response":
            pass
    quotes = [post(sp, "/run/request-service", job("true"))["job_id"] for _ in range(210)]
    sp.kill9()
    sp.start()
    frames = []
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "subscribe", "job_id": job_id})
        while (frame := await ws.receive_json(timeout=60))["action"] not in TERMINAL:
            frames.append(frame)
    assert frame["action"] == "job-completed", frame
    stdout = "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    assert stdout == "first\nsecond\n"

    def expired() -> bool:
        return all(sp.get(f"/api/v1/run/jobs/{q}")["state"] == "failed" for q in (quotes[0], quotes[-1]))

    wait_for(expired, QUOTE_TTL_S + 20, "the unpaid quotes expire")
    last = sp.get(f"/api/v1/run/jobs/{quotes[0]}")
    assert last["state"] == "failed" and "expired" in last["reason"]


def peak_rss_mb(d: DmsProcess) -> float:
    assert d.proc is not None
    status = Path(f"/proc/{d.proc.pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) / 1024


def store_mb(d: DmsProcess) -> float:
    return sum(p.stat().st_size for p in d.data_dir.glob("dms.sqlite3*")) / 2**20


@pytest.fixture
def small_budget(dms_process: Callable[..., DmsProcess]) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    yield cp_and_sp(dms_process, cp={"job": {"log_budget_kb": 256, "log_rate_kb_s": 1024}})


async def test_a_200_mb_flood_reaches_the_dashboard_as_head_marker_and_tail(
    small_budget: tuple[DmsProcess, DmsProcess],
) -> None:
    """13.2: memory and stores stay bounded; the dashboard gets the head, a marker saying how much was
    dropped, and the last line, before job-completed."""
    cp, sp = small_budget
    before = {"cp": (peak_rss_mb(cp), store_mb(cp)), "sp": (peak_rss_mb(sp), store_mb(sp))}
    flood = "echo FIRST LINE; head -c 200000000 /dev/zero | tr '\\0' x; echo; echo LAST LINE"
    job_id = post(sp, "/run/request-service", job(flood, memory_mb=128))["job_id"]
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        frames = await dashboard(ws, job_id)
    assert frames[-1]["action"] == "job-completed", frames[-1]
    logs = [f for f in frames if f["action"] == "log-stream-response"]  # NuNet's: one stream per frame
    stdout = "".join(m.get("stdout", "") for m in logs)
    stderr = "".join(m.get("stderr", "") for m in logs)
    assert stdout.startswith("FIRST LINE\nxxxx") and stdout.endswith("xxxx\nLAST LINE\n")
    assert "characters of output dropped here" in stderr
    dropped = int(stderr.split("[dms: ")[1].split()[0])
    assert dropped == 200_000_000 + len("FIRST LINE\n\nLAST LINE\n") - 256 * 1024
    assert len(stdout) == 256 * 1024  # exactly the budget: half head, half tail
    for name, d in (("cp", cp), ("sp", sp)):
        rss, db = peak_rss_mb(d) - before[name][0], store_mb(d) - before[name][1]
        print(f"{name}: peak RSS +{rss:.1f} MB, store +{db:.2f} MB")
        assert rss < 50, f"{name}: peak RSS grew by {rss:.1f} MB"
        assert db < 10, f"{name}: store grew by {db:.1f} MB"
    await removed(job_id)


async def test_sigterm_with_a_dashboard_connected_stops_fast_and_the_job_survives(
    pair: tuple[DmsProcess, DmsProcess],
) -> None:
    """12.6: the dashboard gets a close frame (1001), the SP exits within 10 s, the job keeps running on
    its provider and is re-attached after the restart."""
    _, sp = pair
    job_id = post(sp, "/run/request-service", job("echo first; sleep 6; echo second"))["job_id"]
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        status = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})
        while (await ws.receive_json(timeout=30))["action"] != "log-stream-response":
            pass
        t0 = time.monotonic()
        assert sp.terminate(timeout=15) == 0
        assert time.monotonic() - t0 < 10
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    sp.start()
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "subscribe", "job_id": job_id})
        frames = []
        while (frame := await ws.receive_json(timeout=60))["action"] not in TERMINAL:
            frames.append(frame)
    assert frame["action"] == "job-completed", frame
    assert "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response") == "first\nsecond\n"
