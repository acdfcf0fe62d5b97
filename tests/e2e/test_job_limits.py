"""A job that fills its disk fails with "disk limit" on the dashboard; the provider keeps working."""

from __future__ import annotations

from typing import Any

from tests.e2e import test_network_and_jobs as nj
from tests.e2e.test_network_and_jobs import job, run_job
from tests.procs import DmsProcess

pair = nj.pair  # the CP and SP fixture


async def test_a_job_that_fills_its_disk_fails_with_disk_limit(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    _, frames = await run_job(sp, job("dd if=/dev/zero of=/workspace/big bs=1M count=500", disk_mb=16))
    end = frames[-1]
    assert end["action"] == "job-failed", frames
    assert "disk limit" in end["message"] and "16 MB" in end["message"], end
    assert "No space left on device" in logs(frames, "stderr")
    # Nothing of the job is left on the provider, and the next job runs as usual.
    assert not list((cp.data_dir / "job-disks").glob("*"))
    _, frames = await run_job(sp, job("echo fine > /workspace/x && cat /workspace/x"))
    assert frames[-1]["action"] == "job-completed", frames
    assert logs(frames, "stdout") == "fine\n"


def logs(frames: list[dict[str, Any]], stream: str) -> str:
    """The job's output as the dashboard got it (either frame shape: the stream inside `message` or beside it)."""
    chunks = [f for f in frames if f["action"] == "log-stream-response"]
    return "".join((f["message"] if isinstance(f.get("message"), dict) else f).get(stream, "") for f in chunks)
