"""One writer per job against two real daemons (issue 12): dashboards racing on one job over real
websockets, recovery of every live job after an SP restart whatever the number of rows, quotes that expire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_daemon_process import onboard
from tests.e2e.test_network_and_jobs import containers_of, job, known
from tests.procs import DmsProcess, post, wait_for

TERMINAL = ("job-completed", "job-failed")
QUOTE_TTL_S = 12


@pytest.fixture
def pair(dms_process: Callable[..., DmsProcess]) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    cp = dms_process("cp").start()
    onboard(cp, 0.5)
    me = cp.get("/api/v1/peers/self")
    sp = dms_process("sp", p2p={"bootstrap_peers": [me["addrs"][0]]}, job={"quote_ttl_s": QUOTE_TTL_S}).start()
    onboard(sp, 0.2)
    wait_for(lambda: me["peer_id"] in known(sp), 10, "the SP sees the CP")
    yield cp, sp


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
            assert await containers_of(job_id) == []


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
    stdout = "".join(f["message"]["stdout"] for f in frames if f["action"] == "log-stream-response")
    assert stdout == "first\nsecond\n"

    def expired() -> bool:
        return all(sp.get(f"/api/v1/run/jobs/{q}")["state"] == "failed" for q in (quotes[0], quotes[-1]))

    wait_for(expired, QUOTE_TTL_S + 20, "the unpaid quotes expire")
    last = sp.get(f"/api/v1/run/jobs/{quotes[0]}")
    assert last["state"] == "failed" and "expired" in last["reason"]
