"""12.8: SIGKILL the SP or the CP at points across a job, restart it, and check the job's story: one
terminal frame, at most one `job-submitted`, frames numbered without repeats, the job run at most once,
the same end on REST as on the websocket, and nothing left behind in Docker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_daemon_process import onboard
from tests.e2e.test_network_and_jobs import containers_of, job, known, pair, removed
from tests.procs import DmsProcess, post, wait_for

__all__ = ["pair"]  # the fixture, shared with test_network_and_jobs

TERMINAL = ("job-completed", "job-failed")
WORK = "echo start; sleep 2; echo ran once"
FUND = {"transaction_type": "fund", "transaction_status": "success"}


async def start_job(sp: DmsProcess, kill_at: str) -> str:
    """Quote and pay; return once the frame `kill_at` arrives ("paid": at once after send-status)."""
    job_id: str = post(sp, "/run/request-service", job(WORK))["job_id"]
    if kill_at == "quoted":
        return job_id
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": FUND})
        if kill_at == "paid":
            return job_id
        while (await ws.receive_json(timeout=30))["action"] != kill_at:
            pass
    return job_id


async def story(sp: DmsProcess, job_id: str) -> list[dict[str, Any]]:
    """Every frame of the job from the start (paying again if the crash came before the payment was kept)."""
    frames = []
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        if sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "awaiting_payment":
            await ws.send_json({"action": "send-status", "job_id": job_id, "message": FUND})
        else:
            await ws.send_json({"action": "subscribe", "job_id": job_id})
        while (frame := await ws.receive_json(timeout=60))["action"] not in TERMINAL:
            assert frame["action"] != "error", frame
            frames.append(frame)
        frames.append(frame)
    return frames


async def check(sp: DmsProcess, job_id: str) -> str:
    frames = await story(sp, job_id)
    actions = [f["action"] for f in frames]
    assert sum(a in TERMINAL for a in actions) == 1 and actions.count("job-submitted") <= 1, actions
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs)), seqs
    stdout = "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    assert stdout.count("ran once") <= 1 and stdout.count("start") <= 1, stdout
    state: str = sp.get(f"/api/v1/run/jobs/{job_id}")["state"]
    assert (state == "completed") == (actions[-1] == "job-completed"), (state, frames[-1])
    if state == "completed":
        assert stdout == "start\nran once\n"
    deadline = time.monotonic() + 15  # a provider that adopted the job after the SP gave up ends it too
    while await containers_of(job_id):
        assert time.monotonic() < deadline, "a container was left behind"
        await asyncio.sleep(0.2)  # polling interval
    return state


SP_POINTS = ["quoted", "paid", "paid", "job-submitted", "deployment-response", "log-stream-response", "job-completed"]


async def test_sp_killed_at_seven_points_every_job_completes_once(pair: tuple[DmsProcess, DmsProcess]) -> None:
    _, sp = pair
    for point in SP_POINTS:
        job_id = await start_job(sp, point)
        sp.kill9()
        sp.start()
        assert await check(sp, job_id) == "completed", point


@pytest.mark.parametrize("point", ["deployment-response", "log-stream-response", "job-completed"])
async def test_cp_killed_the_job_ends_once_and_the_same_everywhere(
    pair: tuple[DmsProcess, DmsProcess], point: str
) -> None:
    cp, sp = pair
    job_id = await start_job(sp, point)
    cp.kill9()
    cp.start()
    state = await check(sp, job_id)
    if point == "job-completed":
        assert state == "completed"
    elif state == "failed":  # the SP gave up on its provider (silent past 3 heartbeats), and said why
        assert "provider" in (sp.get(f"/api/v1/run/jobs/{job_id}")["reason"] or "")
    else:  # the restarted provider adopted its job's container in time; check() saw all its output once
        assert state == "completed"


@pytest.fixture
def slow_heartbeat(dms_process: Callable[..., DmsProcess]) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    cp = dms_process("cp", p2p={"heartbeat_s": 3}).start()
    onboard(cp, 0.5)
    me = cp.get("/api/v1/peers/self")
    sp = dms_process("sp", p2p={"bootstrap_peers": [me["addrs"][0]], "heartbeat_s": 3}).start()
    onboard(sp, 0.2)
    wait_for(lambda: me["peer_id"] in known(sp), 10, "the SP sees the CP")
    yield cp, sp


async def test_a_cp_restarted_within_three_heartbeats_delivers_what_the_job_wrote_meanwhile(
    slow_heartbeat: tuple[DmsProcess, DmsProcess],
) -> None:
    """13.4: the restarted CP adopts the running container and resumes its output from the engine's copy,
    after the last line it stored: every line once, in order, then job-completed."""
    cp, sp = slow_heartbeat
    lines = "".join(f"line{i}\n" for i in range(1, 9))
    job_id = post(sp, "/run/request-service", job("for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 1; done"))["job_id"]
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": FUND})
        while (await ws.receive_json(timeout=30))["action"] != "log-stream-response":
            pass
        cp.kill9()
        cp.start()
        frames = []
        while (frame := await ws.receive_json(timeout=60))["action"] not in TERMINAL:
            frames.append(frame)
    assert frame["action"] == "job-completed", frame
    assert (
        "".join(f.get("stdout", "") for f in (await story(sp, job_id)) if f["action"] == "log-stream-response")
        == lines
    )
    await removed(job_id)
