"""Jobs' disk on real daemons: the disk limit on the dashboard, and disk reserved and admitted like memory."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.e2e import test_network_and_jobs as nj
from tests.e2e.test_network_and_jobs import job, known, post_error, run_job
from tests.procs import DmsProcess, post, wait_for

pair = nj.pair  # the CP and SP fixture


async def test_job_disk_limit_and_admission(pair: tuple[DmsProcess, DmsProcess]) -> None:
    """A job that fills its disk fails with "disk limit" and the provider keeps working; disk is admitted."""
    cp, sp = pair
    _, frames = await run_job(sp, job("dd if=/dev/zero of=/workspace/big bs=1M count=500", disk_mb=16))
    end = frames[-1]
    assert end["action"] == "job-failed", frames
    assert "disk limit" in end["message"] and "16 MB" in end["message"], end
    assert "No space left on device" in logs(frames, "stderr")
    # Nothing of the job is left on the provider (its disk goes in the background after the result; what
    # stays is the next job's disk, made ahead, and its size's template), and the next job runs as usual.
    def leftovers() -> list[str]:
        return [p.name for p in (cp.data_dir / "job-disks").glob("*") if not p.name.startswith(("ready-", "empty-"))]

    wait_for(lambda: not leftovers(), 10, "the job's disk removed")
    _, frames = await run_job(sp, job("echo fine > /workspace/x && cat /workspace/x"))
    assert frames[-1]["action"] == "job-completed", frames
    assert logs(frames, "stdout") == "fine\n"
    await disk_is_reserved_and_admitted_like_memory(cp, sp)


def logs(frames: list[dict[str, Any]], stream: str) -> str:
    """The job's output as the dashboard got it (either frame shape: the stream inside `message` or beside it)."""
    chunks = [f for f in frames if f["action"] == "log-stream-response"]
    return "".join((f["message"] if isinstance(f.get("message"), dict) else f).get(stream, "") for f in chunks)


async def disk_is_reserved_and_admitted_like_memory(cp: DmsProcess, sp: DmsProcess) -> None:
    reserved = cp.get("/api/v1/onboarding/status")["reserved"]["disk"]
    assert reserved > 0  # onboarded without naming a disk: the default share
    quote = post(sp, "/run/request-service", job("sleep 30", disk_mb=500))
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        pay = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": quote["job_id"], "message": pay})
        cp_id = cp.get("/api/v1/peers/self")["peer_id"]

        def free_disk() -> int:
            return int(cp.get("/api/v1/onboarding/status")["free"]["disk"])

        wait_for(lambda: free_disk() == reserved - 500, 20, "the job holds 500 MB")
        # The SP sees the smaller free disk in the CP's advert, and asking for more than is left finds nobody.
        wait_for(lambda: known(sp)[cp_id]["capacity"]["disk_mb"] == reserved - 500, 10, "the advert shows it")
        status, err = post_error(sp, "/run/request-service", job("true", disk_mb=reserved - 499))
        assert status == 409 and "MB of disk free" in err["message"], err
        await ws.send_json({"action": "cancel", "job_id": quote["job_id"]})
        while (await ws.receive_json(timeout=30))["action"] not in ("job-failed", "job-completed"):
            pass
        wait_for(lambda: free_disk() == reserved, 20, "the disk is released")
