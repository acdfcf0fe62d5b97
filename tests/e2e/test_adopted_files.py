"""A job adopted by its provider after a restart keeps its files' hooks, as a fresh run has them: its
checkpoints go on (numbered on, none overwritten), its /outputs are collected at its end, and its disk is
kept (the start-up clean-up leaves it), so filling it still ends the job at its disk limit. And a job
that ended while its provider was down has its /outputs collected at the restart."""

from __future__ import annotations

import asyncio
import io
import tarfile
from typing import Any

import aiodocker
import aiohttp

from tests.e2e.test_crash_sweep import FUND, TERMINAL, slow_heartbeat
from tests.e2e.test_network_and_jobs import containers_of, job, released, removed
from tests.procs import DmsProcess, post, wait_for

__all__ = ["slow_heartbeat"]  # the fixture: heartbeats of 3 s, so a CP restarted at once is re-attached

COUNT = 150
WORK = (
    "touch /workspace/log; i=0; "
    f"while [ $i -lt {COUNT} ]; do i=$((i+1)); echo $i >> /workspace/log; sleep 0.1; done; "
    "cp /workspace/log /outputs/log; echo counted; dd if=/dev/zero of=/workspace/fill bs=1M count=64"
)
LOG = "".join(f"{i}\n" for i in range(1, COUNT + 1)).encode()
SHORT = "trap 'echo left while the provider was down > /outputs/b; exit 0' TERM; while true; do sleep 0.1; done"


async def download(d: DmsProcess, path: str) -> bytes:
    async with aiohttp.ClientSession() as s, s.get(d.url + path) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def member(tar_bytes: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


async def test_an_adopted_job_keeps_its_checkpoints_outputs_and_disk(
    slow_heartbeat: tuple[DmsProcess, DmsProcess],
) -> None:
    cp, sp = slow_heartbeat
    spec = {**job(WORK, disk_mb=8), "checkpoint": {"path": "/workspace", "interval_s": 1}}
    job_id = post(sp, "/run/request-service", spec)["job_id"]
    short_id = post(sp, "/run/request-service", job(SHORT, memory_mb=32, cpu_mhz=200))["job_id"]
    checkpoints = f"/api/v1/run/jobs/{job_id}/checkpoints"
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "send-status", "job_id": short_id, "message": FUND})
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": FUND})
        runs = f"/api/v1/run/jobs/{short_id}"
        await asyncio.to_thread(wait_for, lambda: sp.get(runs)["state"] == "running", 30, "the short job runs")
        await asyncio.to_thread(wait_for, lambda: len(sp.get(checkpoints)["checkpoints"]) >= 2, 30, "2 checkpoints")
        cp.kill9()
        before = {c["seq"]: c["sha256"] for c in sp.get(checkpoints)["checkpoints"]}
        async with aiodocker.Docker() as docker:  # the short job ends by itself while its provider is down
            (short,) = await containers_of(short_id)
            await docker.containers.container(short.id).kill(signal="TERM")
            await docker.containers.container(short.id).wait()
        cp.start()
        short_end: dict[str, Any] = {}
        while (frame := await ws.receive_json(timeout=90))["action"] not in TERMINAL or frame["job_id"] != job_id:
            if frame["action"] in TERMINAL:
                short_end = frame
    # its disk was kept: filling it ends the job at its disk limit, as in a fresh run
    assert frame["action"] == "job-failed" and frame["message"].startswith("disk limit"), frame
    # its outputs were collected at its end
    outputs = frame["detail"].get("outputs")
    assert outputs, frame
    assert member(await download(sp, f"/api/v1/run/jobs/{job_id}/outputs"), "log") == LOG
    # its checkpoints went on after the restart, numbered on: none of the earlier ones was replaced
    wait_for(lambda: any(c["final"] for c in sp.get(checkpoints)["checkpoints"]), 30, "the final checkpoint")
    after = sp.get(checkpoints)["checkpoints"]
    assert all(c["sha256"] == before[c["seq"]] for c in after if c["seq"] in before), (before, after)
    run_seqs = [c["run_seq"] for c in after]
    assert run_seqs == sorted(set(run_seqs)), after
    later = [c for c in after if c["seq"] > max(before)]
    assert any(not c["final"] for c in later), after  # periodic ones, taken by the restarted provider
    final = after[-1]
    assert final["final"] and member(await download(sp, f"/api/v1/artifacts/{final['sha256']}"), "log") == LOG
    await removed(job_id)
    # the short job's end was found at the restart, with its outputs
    assert short_end["job_id"] == short_id and short_end["action"] == "job-completed", short_end
    assert short_end["detail"].get("outputs"), short_end
    got = member(await download(sp, f"/api/v1/run/jobs/{short_id}/outputs"), "b")
    assert got == b"left while the provider was down\n"
    await removed(short_id)
    wait_for(lambda: released(cp), 10, "both jobs' resources released")
