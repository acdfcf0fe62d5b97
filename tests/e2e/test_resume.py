"""A job outlives its provider: SIGKILL the provider mid-run and the job resumes on a second provider
from its last checkpoint, on the same job id, and completes with its counter continuing (not from 0);
its outputs download byte-identical to what the job wrote. And the other side of it: a provider whose SP
is gone stops a resumable run within 3 heartbeats (its SP may have started it elsewhere)."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.e2e.nodes import cp_and_sp, two_providers
from tests.e2e.test_network_and_jobs import containers_of, removed
from tests.procs import DmsProcess, post, wait_for

HB = 1.0
COUNT = 60
COUNTER = (
    "touch /workspace/log; i=$(tail -n1 /workspace/log); i=${i:-0}; echo start $i; "
    f"while [ $i -lt {COUNT} ]; do i=$((i+1)); echo $i >> /workspace/log; sleep 0.1; done; "
    "cp /workspace/log /outputs/log; echo counted"
)


def resumable(counter: str = COUNTER) -> dict[str, Any]:
    """A counter job that checkpoints /workspace every second and asks to resume on another provider."""
    return {
        "image": "dms-test/busybox:1", "command": ["sh", "-c", counter],
        "resources": {"cpu_mhz": 300, "cores": 0.5, "memory_mb": 32}, "max_price": 10**18, "duration_s": 120,
        "checkpoint": {"path": "/workspace", "interval_s": 1}, "resume": "on-failure",
    }  # fmt: skip


async def kill_after_checkpoints(sp: DmsProcess, job_id: str, cp: DmsProcess, n: int = 2) -> None:
    """SIGKILL the provider once the SP holds n checkpoints of the job."""
    path = f"/api/v1/run/jobs/{job_id}/checkpoints"
    await asyncio.to_thread(wait_for, lambda: len(sp.get(path)["checkpoints"]) >= n, 30, f"{n} checkpoints")
    await asyncio.to_thread(cp.kill9)


async def test_job_resumes_on_another_provider_after_a_sigkill(dms_process: Callable[..., DmsProcess]) -> None:
    cps, ids, sp = two_providers(dms_process)
    quote = post(sp, "/run/request-service", resumable())
    job_id = quote["job_id"]
    first = next(cp for cp, i in zip(cps, ids, strict=True) if i["peer_id"] == quote["compute_provider"]["peer_id"])
    other = ids[1] if first is cps[0] else ids[0]
    frames: list[dict[str, Any]] = []
    killed_at = 0.0
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        status = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})

        async def kill_after_a_checkpoint() -> None:
            nonlocal killed_at
            await kill_after_checkpoints(sp, job_id, first)
            killed_at = time.monotonic()

        killer = asyncio.create_task(kill_after_a_checkpoint())
        while True:
            frame = await ws.receive_json(timeout=120)
            frames.append(frame)
            if frame["action"] == "job-resumed":
                resumed_after = time.monotonic() - killed_at
            if frame["action"] in ("job-completed", "job-failed", "error"):
                break
        await killer

    assert frames[-1]["action"] == "job-completed", frames[-1]
    resumed = [f for f in frames if f["action"] == "job-resumed"]
    assert len(resumed) == 1 and resumed[0]["job_id"] == job_id
    detail = resumed[0]["detail"]
    assert detail["compute_provider"] == other["peer_id"] and detail["run"] == 2 and detail["checkpoint"] >= 2
    assert resumed_after <= 3 * HB + 5, resumed_after  # loss seen within 3 heartbeats, then a new dispatch
    stdout = "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    starts = [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("start ")]
    assert starts[0] == 0 and len(starts) == 2 and starts[1] > 0, stdout  # the second run went on from the checkpoint
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["compute_provider"] == other["peer_id"]
    async with aiohttp.ClientSession() as s, s.get(f"{sp.url}/api/v1/run/jobs/{job_id}/outputs") as r:
        body = await r.read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        log = tar.extractfile("log")
        assert log is not None and log.read() == "".join(f"{i}\n" for i in range(1, COUNT + 1)).encode()
    # the killed provider, restarted, removes its orphaned container; the SP does not listen to that run
    first.start()
    await removed(job_id)
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "completed"


async def test_a_provider_fences_a_resumable_run_once_its_sp_is_gone(dms_process: Callable[..., DmsProcess]) -> None:
    _, sp = cp_and_sp(dms_process, 0.4)
    long_job = COUNTER.replace(f"-lt {COUNT}", "-lt 900")  # 90 s unless stopped
    job_id = post(sp, "/run/request-service", resumable(long_job))["job_id"]
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        status = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})
        path = f"/api/v1/run/jobs/{job_id}/checkpoints"
        await asyncio.to_thread(wait_for, lambda: sp.get(path)["checkpoints"], 30, "a checkpoint")
    assert await containers_of(job_id), "the job runs"
    sp.kill9()
    t0 = time.monotonic()
    while await containers_of(job_id):
        assert time.monotonic() - t0 < 3 * HB + 8, "the provider did not stop the run"
        await asyncio.sleep(0.2)
