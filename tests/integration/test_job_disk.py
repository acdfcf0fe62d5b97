"""A job's disk against the real engine: a read-only root, a /workspace of exactly its size, a clear end
when it fills it, and the engine's own log copy bounded."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from dms.executor import loopdev
from dms.executor.base import ContainerSpec, EndReason
from dms.executor.docker import ENGINE_LOG_FILE_MB, ENGINE_LOG_FILES, DockerExecutor, container_config
from dms.executor.jobdisk import JobDisk, JobDisks
from tests.integration.logsink import Logs
from tests.integration.test_docker_executor import IMAGE


@pytest.fixture(params=["mounted by dms", "mounted by the engine"])
async def executor(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DockerExecutor]:
    """Both ways a job's ext4 disk reaches its container: mounted by dms and bind-mounted (the engine sees
    our mounts), or mounted by the engine as a volume (a daemon in a mount namespace of its own)."""
    if request.param == "mounted by the engine":
        monkeypatch.setattr(loopdev, "shares_mounts_with", lambda _path: False)
    ex = DockerExecutor(f"test-{uuid.uuid4().hex[:8]}", log_batch_s=0.05, disk_dir=tmp_path / "disks")
    assert await ex.available() is None, "the Docker engine must run for these tests (maint-scripts/start-docker.sh)"
    yield ex
    await ex.settle()  # ended containers are removed in the background, after the result
    assert await ex.reconcile() == [], "a container was left behind"
    await ex.close()
    assert list((tmp_path / "disks").glob("*")) == [], "a disk image was left behind"


def spec(cmd: str, **kw: object) -> ContainerSpec:
    return ContainerSpec(job_id=uuid.uuid4().hex[:12], image=IMAGE, command=("sh", "-c", cmd), **kw)  # type: ignore[arg-type]


async def test_workspace_is_the_only_writable_place_and_has_the_jobs_size(executor: DockerExecutor) -> None:
    logs = Logs()
    cmd = (
        "touch /rootfs-file 2>/dev/null && echo root-writable;"
        "df -k /workspace | tail -1;"
        "echo kept > /workspace/a && cat /workspace/a"
    )
    result = await executor.run(spec(cmd, disk_mb=32), logs)
    assert (result.exit_code, result.reason) == (0, EndReason.EXITED), logs.stderr
    lines = logs.stdout.splitlines()
    assert "root-writable" not in lines
    size_kb = int(lines[0].split()[1])
    assert 28 * 1024 <= size_kb <= 32 * 1024, lines[0]  # ext4 keeps a little for itself
    assert lines[-1] == "kept"


async def test_a_job_that_fills_its_disk_ends_at_the_disk_limit(executor: DockerExecutor) -> None:
    logs = Logs()
    result = await executor.run(spec("dd if=/dev/zero of=/workspace/big bs=1M count=200", disk_mb=16), logs)
    assert result.reason == EndReason.DISK_LIMIT and result.exit_code != 0, logs.stderr
    assert "No space left on device" in logs.stderr
    # Failing for another reason with room to spare is not a disk limit.
    other = await executor.run(spec("echo small > /workspace/f; exit 3", disk_mb=16), Logs())
    assert (other.exit_code, other.reason) == (3, EndReason.EXITED)


async def test_the_engines_log_copy_is_bounded(executor: DockerExecutor) -> None:
    seen: dict[str, object] = {}
    job = spec("echo hi", disk_mb=8)

    async def inspect() -> None:
        async with aiodocker.Docker() as docker:
            found = await docker.containers.list(all=True, filters=json.dumps({"label": [f"dms.job={job.job_id}"]}))
            seen.update((await found[0].show())["HostConfig"])

    assert (await executor.run(job, Logs(), on_start=inspect)).exit_code == 0
    assert seen["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": f"{ENGINE_LOG_FILE_MB}m", "max-file": str(ENGINE_LOG_FILES)},
    }
    assert seen["ReadonlyRootfs"] is True


def test_a_tmpfs_disk_counts_against_memory() -> None:
    """Where loop devices are not allowed the disk is a sized tmpfs: its pages are the container's memory."""
    job = spec("true", memory_mb=64, disk_mb=32)
    tmpfs = JobDisk(job.job_id, 32, None, None)
    cfg = container_config(job, "inst", tmpfs)["HostConfig"]
    assert cfg["Memory"] == cfg["MemorySwap"] == (64 + 32) * 2**20
    assert tmpfs.volume_options() == {"type": "tmpfs", "device": "tmpfs", "o": "size=32m,mode=1777"}
    ext4 = JobDisk(job.job_id, 32, Path("/x.img"), "/dev/loop9")
    assert container_config(job, "inst", ext4)["HostConfig"]["Memory"] == 64 * 2**20
    assert container_config(job, "inst", ext4)["HostConfig"]["Mounts"][0]["Target"] == "/workspace"


async def test_without_loop_devices_the_disk_is_a_sized_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon that may not attach loop devices (not root, or no /dev/loop-control in its container) still
    bounds the job's disk, in memory."""
    monkeypatch.setattr(loopdev, "LOOP_CONTROL", tmp_path / "no-loop-control")
    ex = DockerExecutor(f"test-{uuid.uuid4().hex[:8]}", log_batch_s=0.05, disk_dir=tmp_path / "disks")
    try:
        logs = Logs()
        job = spec("df -k /workspace | tail -1; dd if=/dev/zero of=/workspace/big bs=1M count=64", disk_mb=16)
        result = await ex.run(job, logs)
        assert result.exit_code != 0 and result.reason == EndReason.EXITED, logs.stderr
        assert "No space left on device" in logs.stderr
        assert logs.stdout.split()[0] == "tmpfs" and int(logs.stdout.split()[1]) == 16 * 1024, logs.stdout
        assert await ex.reconcile() == []
    finally:
        await ex.close()
    assert list((tmp_path / "disks").glob("*")) == []


async def test_a_checkpoint_is_the_jobs_bounded_disk_restored_and_copied_out(
    executor: DockerExecutor, tmp_path: Path
) -> None:
    """Checkpoints use the job's disk (one mount at /workspace, still bounded): a seed folder becomes the
    disk's first contents, a running job's disk is copied out, and the ended job's disk once more."""
    seed, live, final = tmp_path / "seed", tmp_path / "live", tmp_path / "final"
    (seed / "sub").mkdir(parents=True)
    (seed / "sub" / "counter").write_text("41\n")
    live.mkdir()
    final.mkdir()
    logs = Logs()
    job = spec(
        "cat /workspace/sub/counter; echo 42 > /workspace/sub/counter; df -k /workspace | tail -1;"
        "touch /workspace/ready; sleep 30",
        disk_mb=16, workspace_seed=str(seed), workspace_dump=str(final),
    )  # fmt: skip
    config = container_config(job, "x", JobDisk(job.job_id, 16, tmp_path / "i.img", "/dev/loop9"))
    assert [m["Target"] for m in config["HostConfig"]["Mounts"]] == ["/workspace"]  # one mount, the sized disk

    async def started() -> None:
        for _ in range(200):  # the job marks /workspace/ready once it wrote its counter
            await executor.dump_workspace(job.job_id, live)
            if (live / "ready").exists():
                break
            shutil.rmtree(live)
            live.mkdir()
        await executor.cancel(job.job_id)

    result = await executor.run(job, logs, started)
    assert result.reason == EndReason.CANCELLED, logs.stderr
    assert logs.stdout.splitlines()[0] == "41"
    assert int(logs.stdout.splitlines()[1].split()[1]) <= 16 * 1024  # still exactly its size
    assert (live / "sub" / "counter").read_text() == "42\n"
    assert (final / "sub" / "counter").read_text() == "42\n" and (final / "ready").exists()


async def test_empty_disks_are_made_ahead_and_none_is_left_behind(tmp_path: Path) -> None:
    """The disk a job takes was made before it asked (mkfs, debugfs and losetup are off the job's path)."""
    disks = JobDisks(tmp_path / "disks")
    first = await disks.create("job-a", 16)  # the first of a size is made for it, and the next one starts
    await disks.settled()
    made_ahead = list((tmp_path / "disks").glob("ready-*.img"))
    assert len(made_ahead) == 1, made_ahead
    second = await disks.create("job-b", 16)  # takes it, renamed for the job (a restart's adoption finds it)
    seed = tmp_path / "checkpoint"
    seed.mkdir()
    (seed / "state").write_text("x")
    restored = await disks.create("job-c", 16, seed=seed)  # a restored checkpoint is always made for it
    other = await disks.create("job-d", 24)
    try:
        assert (first.job_id, second.job_id) == ("job-a", "job-b")
        assert first.image is not None and first.image.name == "job-a.img"
        assert second.image is not None and second.image.name == "job-b.img" and second.loop
        assert not made_ahead[0].exists()
        assert restored.image is not None and restored.image.name == "job-c.img"
        assert other.image is not None and other.image.name == "job-d.img"
        assert second.loop not in (first.loop, restored.loop, other.loop)
        assert not await disks.is_full(second)  # a real, empty ext4 file system of that size
        await disks.settled()
        await disks.remove_leftovers()  # a crash's leftovers go; the disks made ahead stay ready
        ready = [p.name for p in (tmp_path / "disks").glob("ready-*.img")]
        assert len(ready) == 2, ready  # one more of each size asked
    finally:
        for d in (first, second, restored, other):
            await disks.remove(d)
        await disks.close()
    assert list((tmp_path / "disks").glob("*")) == []


async def test_many_disks_attach_at_once_each_to_its_own_loop_device(tmp_path: Path) -> None:
    """A burst attaches many disks at once: the threads of one daemon never race for the same free device."""
    images = []
    for i in range(24):
        image = tmp_path / f"{i}.img"
        with image.open("wb") as f:
            f.truncate(2**20)
        images.append(image)
    devices = await asyncio.gather(*(asyncio.to_thread(loopdev.attach, image) for image in images))
    try:
        assert len(set(devices)) == len(images)
    finally:
        for device in devices:
            await asyncio.to_thread(loopdev.detach, device)


async def test_a_disk_mounted_here_is_found_after_a_restart_and_cleaned_up_after_a_crash(tmp_path: Path) -> None:
    """A daemon that mounts its job disks itself and dies: the next one re-attaches a kept job's disk with its
    mount, and removes the others (unmounted, detached, deleted)."""
    disks = JobDisks(tmp_path / "disks", lambda: True)
    kept, lost = await disks.create("kept", 16), await disks.create("lost", 16)
    assert kept.mount is not None and kept.mount.is_mount() and lost.mount is not None
    (kept.mount / "state").write_text("x")
    after = JobDisks(tmp_path / "disks", lambda: True)  # the next start; the first one is gone without a word
    again = await after.reattach("kept")
    assert again is not None and (again.loop, again.mount) == (kept.loop, kept.mount)
    await after.remove_leftovers(keep=frozenset({"kept"}))
    assert not lost.mount.exists() and not lost.image.exists()  # type: ignore[union-attr]
    assert (kept.mount / "state").read_text() == "x"
    await after.remove(again)
    await disks.close()  # its disk made ahead
    await after.close()
    assert list((tmp_path / "disks").glob("*")) == []
    attached = await asyncio.create_subprocess_exec("losetup", "-j", str(lost.image), stdout=asyncio.subprocess.PIPE)
    assert (await attached.communicate())[0] == b""


def test_a_sparse_copy_keeps_the_data_and_the_holes(tmp_path: Path) -> None:
    source, dest = tmp_path / "a.img", tmp_path / "b.img"
    with source.open("wb") as f:
        f.truncate(64 * 2**20)
        for at in (0, 5 * 2**20, 64 * 2**20 - 4096):
            f.seek(at)
            f.write(bytes([at % 251 + 1]) * 4096)
    loopdev.sparse_copy(source, dest)
    assert dest.read_bytes() == source.read_bytes()
    assert dest.stat().st_blocks * 512 < 2**20  # what was written, not 64 MB
