"""The Docker executor against the real engine (started by maint-scripts/start-docker.sh)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from dms.executor.base import ContainerSpec, EndReason, ExecutorUnavailable, ImageMissing
from dms.executor.docker import DockerExecutor, container_config
from tests.integration.logsink import Logs

IMAGE = "dms-test/busybox:1"


@pytest.fixture
async def executor() -> AsyncIterator[DockerExecutor]:
    ex = DockerExecutor(f"test-{uuid.uuid4().hex[:8]}", log_batch_s=0.05)
    assert await ex.available() is None, "the Docker engine must run for these tests (maint-scripts/start-docker.sh)"
    yield ex
    await ex.settle()  # ended containers are removed in the background, after the result
    assert await ex.reconcile() == [], "a container was left behind"
    await ex.close()


def spec(cmd: str, **kw: object) -> ContainerSpec:
    return ContainerSpec(job_id=uuid.uuid4().hex[:12], image=IMAGE, command=("sh", "-c", cmd), **kw)  # type: ignore[arg-type]


async def test_runs_and_streams_stdout_and_stderr(executor: DockerExecutor) -> None:
    logs = Logs()
    result = await executor.run(spec("echo hello; echo oops >&2; sleep 0.3; echo again"), logs)
    assert (result.exit_code, result.reason) == (0, EndReason.EXITED)
    assert logs.stdout == "hello\nagain\n" and logs.stderr == "oops\n"
    assert len(logs.chunks) >= 2  # batched while running, not only at the end


async def test_exit_code_is_kept(executor: DockerExecutor) -> None:
    result = await executor.run(spec("exit 3"), Logs())
    assert (result.exit_code, result.reason) == (3, EndReason.EXITED)


async def test_sandbox_no_network_no_capabilities(executor: DockerExecutor) -> None:
    logs = Logs()
    await executor.run(
        spec("ls /sys/class/net; grep CapEff /proc/self/status; cat /proc/self/status | grep NoNewPrivs"), logs
    )
    assert logs.stdout.split()[0] == "lo" and "eth0" not in logs.stdout
    assert "CapEff:\t0000000000000000" in logs.stdout
    assert "NoNewPrivs:\t1" in logs.stdout


async def test_the_root_is_read_only_and_tmp_is_small_and_writable(executor: DockerExecutor) -> None:
    """Programs expect a /tmp: a tmpfs of a quarter of the job's memory (charged to it), full at its size."""
    logs = Logs()
    cmd = (
        "echo kept > /tmp/f && cat /tmp/f; touch /f 2>&1; "
        "dd if=/dev/zero of=/tmp/big bs=1M count=20 2>&1; echo tmp $(du -m /tmp/big | cut -f1)"
    )
    result = await executor.run(spec(cmd, memory_mb=64), logs)
    assert result.exit_code == 0, logs.stdout + logs.stderr
    lines = logs.stdout.splitlines()
    assert lines[0] == "kept" and "Read-only file system" in lines[1]
    assert "No space left on device" in logs.stdout and lines[-1] == "tmp 16", logs.stdout


async def test_memory_hog_is_killed_inside_its_limit(executor: DockerExecutor) -> None:
    other = asyncio.create_task(executor.run(spec("sleep 1; echo fine"), neighbour := Logs()))
    result = await executor.run(spec("x=aaaaaaaa; while true; do x=$x$x; done", memory_mb=32), Logs())
    assert result.reason == EndReason.OOM_KILLED and result.exit_code == 137
    assert (await other).exit_code == 0 and neighbour.stdout == "fine\n"


async def test_fork_bomb_is_capped_by_the_pids_limit(executor: DockerExecutor) -> None:
    """The engine's own count of the container's processes never passes the limit; a neighbour is unharmed."""
    import aiodocker

    bomb = spec("f(){ f & f & exec sleep 100; }; f 2>/dev/null", pids_limit=16, timeout_s=4)
    task = asyncio.create_task(executor.run(bomb, Logs()))
    neighbour = asyncio.create_task(executor.run(spec("sleep 2; echo fine"), calm := Logs()))
    seen: list[int] = []
    async with aiodocker.Docker() as docker:
        while not task.done():
            for c in await docker.containers.list(filters=f'{{"label": ["dms.job={bomb.job_id}"]}}'):
                with contextlib.suppress(aiodocker.DockerError):
                    seen += [int(s.get("pids_stats", {}).get("current", 0)) for s in await c.stats(stream=False)]
            await asyncio.sleep(0.2)
    assert (await task).reason == EndReason.TIMEOUT
    assert max(seen) >= 8, seen  # the bomb did fork...
    assert max(seen) <= 16, seen  # ...up to the limit and no further
    assert (await neighbour).exit_code == 0 and calm.stdout == "fine\n"


async def test_timeout_stops_the_job(executor: DockerExecutor) -> None:
    result = await executor.run(spec("sleep 60", timeout_s=1), Logs())
    assert result.reason == EndReason.TIMEOUT


async def test_cancel(executor: DockerExecutor) -> None:
    s = spec("echo started; sleep 60")
    logs = Logs()
    task = asyncio.create_task(executor.run(s, logs))
    for _ in range(100):
        if logs.stdout:
            break
        await asyncio.sleep(0.05)
    await executor.cancel(s.job_id)
    result = await asyncio.wait_for(task, 20)
    assert result.reason == EndReason.CANCELLED


async def test_missing_image_is_named(executor: DockerExecutor) -> None:
    with pytest.raises(ImageMissing, match="dms-test/nothing:9"):
        await executor.run(ContainerSpec(job_id="x", image="dms-test/nothing:9"), Logs())


async def test_reconcile_reports_and_removes_leftovers(executor: DockerExecutor) -> None:
    import aiodocker

    instance = executor._instance
    async with aiodocker.Docker() as docker:
        done = await docker.containers.create(container_config(spec("exit 4"), instance))
        await done.start()
        await done.wait()
        running = await docker.containers.create(container_config(spec("sleep 60"), instance))
        await running.start()
    left = sorted(await executor.reconcile(), key=lambda x: x.running)
    assert [(x.running, x.exit_code) for x in left] == [(False, 4), (True, None)]
    assert await executor.reconcile() == []


async def test_no_engine_is_reported_not_raised() -> None:
    ex = DockerExecutor("t", url="unix:///nonexistent/docker.sock")
    reason = await ex.available()
    assert reason is not None and "does not answer" in reason
    with pytest.raises(ExecutorUnavailable):
        await ex.run(spec("true"), Logs())
    await ex.close()


def test_container_config_is_sandboxed() -> None:
    cfg = container_config(spec("true", cores=0.5, memory_mb=64), "inst")
    host = cfg["HostConfig"]
    assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"] and host["Privileged"] is False
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["Binds"] == [] and host["Devices"] == []
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == host["MemorySwap"] == 64 * 2**20
    assert host["ReadonlyRootfs"] is True and host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=16m,mode=1777"}
    assert cfg["Labels"]["dms.instance"] == "inst"
