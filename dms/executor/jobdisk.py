"""A job's bounded writable space, `/workspace`: the only place a job can write to disk.

The engine's overlay2 here sits on ext4 and cannot take a size quota (docs/libraries.md: "Job disk,
checkpoints and the engine's logs"), so each job gets its own file system of exactly its size: a sparse image file
`<dir>/<job>.img` made ext4 (`mkfs.ext4`, no journal, no reserved blocks), attached to a loop device,
mounted by dms at `<dir>/<job>.mnt` and bind-mounted at `/workspace`. (When the engine cannot see this
process's mounts, a daemon in a mount namespace of its own, the engine mounts it instead, as an anonymous
volume: `local` driver, `type=ext4`, `device=/dev/loopN`.) Writes past the size fail with ENOSPC inside
the job only; the image is sparse, so it takes on the host only what the job wrote. A disk-backed file
system is also what the checkpoint work needs: it is read from the image (it cannot be from a tmpfs).

Loop devices need root (the daemon's user must open `/dev/loop-control`). Without them the job gets
a sized tmpfs volume instead: bounded just the same, but it is memory (the container's memory limit
grows by its size) and the archive API cannot see it. `JobDisk.kind` says which one a job got.

An empty disk is a sparse copy of its size's template image (made once with `mkfs.ext4` and `debugfs`),
attached with the kernel's loop ioctls (`loopdev.py`): no process is spawned for it. A restored
checkpoint's disk is made with `mkfs.ext4 -d`; a checkpoint is read with `debugfs`, a full disk told by
`dumpe2fs`: those tools run as subprocesses. Nothing here talks to the engine: the executor hands the
container the mount point (`JobDisk.mount`), or the volume from `volume_options()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dms.executor import loopdev

log = logging.getLogger(__name__)

WORKSPACE = "/workspace"
TEMPLATE_SUFFIX = ".template"
READY_SIZES = 2
"""Disk sizes kept ready ahead of jobs (one disk each): the first sizes jobs ask for (the default, 64 MB)."""
FULL_SHARE, FULL_BYTES = 0.05, 2 * 2**20
"""A disk with less free than the larger of these counts as full: a write that does not fit fails whole,
so a job that ran out of space usually leaves up to one write's worth (often 1 MiB) unused."""


class JobDiskError(Exception):
    """The job's disk could not be made; the message says why."""


class ToolMissing(JobDiskError):
    """A tool the ext4 disk needs is not installed."""


@dataclass(frozen=True)
class JobDisk:
    job_id: str
    size_mb: int
    image: Path | None
    """The ext4 image file (None for a tmpfs disk)."""
    loop: str | None
    """The loop device the image is attached to (None for a tmpfs disk)."""
    mount: Path | None = None
    """Where this daemon mounted the ext4 disk (the container gets a bind mount of it); None when the
    engine mounts it, as a volume (`volume_options`)."""

    @property
    def kind(self) -> str:
        return "ext4" if self.loop else "tmpfs"

    @property
    def memory_mb(self) -> int:
        """Memory the disk itself takes from the container's limit: all of it for tmpfs, none for ext4."""
        return 0 if self.loop else self.size_mb

    def volume_options(self) -> dict[str, str]:
        """DriverOpts of the Docker `local` volume driver for this disk."""
        if self.loop:
            return {"type": "ext4", "device": self.loop}
        return {"type": "tmpfs", "device": "tmpfs", "o": f"size={self.size_mb}m,mode=1777"}


def _remove(disk: JobDisk) -> None:
    if disk.mount is not None:
        try:
            loopdev.unmount(disk.mount)
        except OSError as exc:  # busy: the detach below waits for the last user, remove_leftovers retries
            log.warning("cannot unmount %s (job %s): %s", disk.mount, disk.job_id, exc)
    if disk.loop:
        try:
            loopdev.detach(disk.loop)
        except OSError as exc:
            log.warning("cannot detach %s (job %s): %s", disk.loop, disk.job_id, exc)
    if disk.image is not None:
        try:
            disk.image.unlink(missing_ok=True)
        except OSError as exc:  # left for the next start's remove_leftovers
            log.warning("cannot delete %s (job %s): %s", disk.image, disk.job_id, exc)


async def _tool(*argv: str, stdin: bytes | None = None) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{argv[0]} is not installed (util-linux, e2fsprogs)") from exc
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        msg = err.decode(errors="replace").strip().splitlines()
        raise JobDiskError(f"{argv[0]} failed: {msg[-1] if msg else f'exit status {proc.returncode}'}")
    return out.decode(errors="replace")


class JobDisks:
    """Makes and removes jobs' disks under `directory` (one sparse image per running job)."""

    def __init__(self, directory: Path, mount_here: Callable[[], bool] = lambda: False) -> None:
        """`mount_here` (blocking, asked once): whether the engine sees what this process mounts."""
        self.directory = directory
        self._mount_here = mount_here
        self._loops_work: bool | None = None
        self._own_mounts: bool | None = None
        """Whether disks are mounted here (bind-mounted into containers) rather than by the engine; None
        until the first mount tells."""
        self._ready: dict[int, list[JobDisk]] = {}
        """Empty disks made ahead, by size: a job's disk is then only taken, not made."""
        self._filling: dict[int, asyncio.Task[None]] = {}
        self._templates: dict[int, asyncio.Task[Path]] = {}
        """The empty image each size's disks are copied from (made on first use)."""
        self._closed = False

    def _image(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.img"

    async def create(self, job_id: str, size_mb: int, seed: Path | None = None) -> JobDisk:
        """A fresh disk of `size_mb` for the job, empty or holding a copy of folder `seed` (a restored
        checkpoint: needs an ext4 disk). Raises JobDiskError.

        An empty disk comes from the ready ones when there is one of that size (made ahead, off the job's
        path: mkfs, debugfs and losetup take tens of ms here); taking one starts making the next."""
        if self._loops_work is False:
            if seed is not None:
                raise JobDiskError("restoring a checkpoint needs loop devices (the job's disk would be a tmpfs)")
            return JobDisk(job_id, size_mb, None, None)
        if seed is None:
            ready = self._ready.get(size_mb)
            if not ready:
                disk = await self._make(job_id, size_mb, None)
            else:  # renamed for its job, so that after a restart `reattach` finds it
                disk = ready.pop()
                assert disk.image is not None
                image = disk.image.rename(self._image(job_id))
                disk = dataclasses.replace(disk, job_id=job_id, image=image)
            self._refill(size_mb)
        else:
            disk = await self._make(job_id, size_mb, seed)
        return await self._mounted(disk) if disk.loop else disk

    async def _make(self, name: str, size_mb: int, seed: Path | None) -> JobDisk:
        image = self._image(name)
        try:
            if seed is None:  # a copy of the size's empty template: no tool runs for it
                template = await self._template(size_mb)
                await asyncio.to_thread(loopdev.sparse_copy, template, image)
            else:
                await self._format(image, size_mb, seed)
        except OSError as exc:
            image.unlink(missing_ok=True)
            raise JobDiskError(f"cannot make the job's disk image {image}: {exc.strerror or exc}") from exc
        except JobDiskError as exc:
            image.unlink(missing_ok=True)
            # The first disk tells whether this machine allows ext4 disks at all (the tools); a later
            # failure is about that job only (e.g. no space left for its image).
            if self._loops_work is None and isinstance(exc, ToolMissing):
                return self._no_loops(name, size_mb, exc)
            raise
        try:
            loop = await asyncio.to_thread(loopdev.attach, image)
        except OSError as exc:
            image.unlink(missing_ok=True)
            if self._loops_work is None:  # no loop devices here (not root, or none in this container)
                return self._no_loops(name, size_mb, exc)
            raise JobDiskError(f"cannot attach the job's disk to a loop device: {exc.strerror or exc}") from exc
        self._loops_work = True
        return JobDisk(name, size_mb, image, loop)

    def _mount_point(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.mnt"

    async def _mounted(self, disk: JobDisk) -> JobDisk:
        """`disk`, mounted here when this daemon shares the engine's mounts: the container then gets a bind
        mount, which costs the engine less than a volume of its own (a volume's record, its mount and its
        removal: about 0.2 s per 50 jobs here, bench/RESULTS.md). Otherwise (or when mounting is refused
        the first time) the engine keeps mounting it as a volume."""
        assert disk.loop is not None
        if self._own_mounts is False:
            return disk
        if self._own_mounts is None and not await asyncio.to_thread(self._mount_here):
            self._own_mounts = False
            return disk
        target = self._mount_point(disk.job_id)
        try:
            await asyncio.to_thread(loopdev.mount_ext4, disk.loop, target)
        except OSError as exc:
            if self._own_mounts is None:  # the first mount tells whether this daemon may mount at all
                self._own_mounts = False
                log.info("job disks are mounted by the engine, as volumes (%s)", exc)
                return disk
            await self.remove(disk)
            raise JobDiskError(f"cannot mount the job's disk: {exc.strerror or exc}") from exc
        self._own_mounts = True
        return dataclasses.replace(disk, mount=target)

    def _no_loops(self, name: str, size_mb: int, why: Exception) -> JobDisk:
        self._loops_work = False
        log.warning("no ext4 job disks (%s): jobs' disks are sized tmpfs volumes, counted as memory", why)
        return JobDisk(name, size_mb, None, None)

    async def _format(self, image: Path, size_mb: int, seed: Path | None) -> None:
        """`image`: a new sparse file of `size_mb` made an ext4 file system (holding a copy of `seed`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with image.open("wb") as f:
            f.truncate(size_mb * 2**20)
        populate = ("-d", str(seed)) if seed is not None else ()
        await _tool("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard", *populate, str(image))
        # Anyone may write at the top (images run as any user), as in /tmp.
        await _tool("debugfs", "-w", "-R", "sif / mode 041777", str(image))

    async def _template(self, size_mb: int) -> Path:
        """The empty ext4 image of `size_mb` that new disks copy (made once per size; its file systems then
        share one UUID, which ext4 does not mind)."""
        making = self._templates.get(size_mb)
        if making is None or (making.done() and (making.exception() or not making.result().exists())):
            path = self.directory / f"empty-{size_mb}{TEMPLATE_SUFFIX}"
            making = self._templates[size_mb] = asyncio.create_task(self._made(path, size_mb))
        return await asyncio.shield(making)

    async def _made(self, path: Path, size_mb: int) -> Path:
        try:
            await self._format(path, size_mb, None)
        except BaseException:
            await asyncio.to_thread(path.unlink, True)
            raise
        return path

    def _refill(self, size_mb: int) -> None:
        """Make a ready disk of `size_mb` in the background, unless one is there or being made."""
        if self._closed or self._loops_work is False or self._ready.get(size_mb) or size_mb in self._filling:
            return
        if len(self._ready) >= READY_SIZES and size_mb not in self._ready:
            return  # only the sizes jobs ask for most: the first few seen
        self._filling[size_mb] = asyncio.create_task(self._fill(size_mb))

    async def _fill(self, size_mb: int) -> None:
        try:
            disk = await self._make(f"ready-{uuid.uuid4().hex}", size_mb, None)
        except JobDiskError as exc:
            log.warning("cannot make a job disk ahead: %s", exc)
            return
        finally:
            self._filling.pop(size_mb, None)
        if self._closed or disk.loop is None:
            await self.remove(disk)
            return
        self._ready.setdefault(size_mb, []).append(disk)

    async def settled(self) -> None:
        """Wait until the disks being made ahead are made."""
        for task in list(self._filling.values()):
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def close(self) -> None:
        """Remove the disks made ahead (and stop making more). Never raises."""
        self._closed = True
        for task in list(self._filling.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for disks in self._ready.values():
            for disk in disks:
                await self.remove(disk)
        self._ready.clear()
        for making in self._templates.values():
            with contextlib.suppress(BaseException):
                (await making).unlink(missing_ok=True)
        self._templates.clear()

    async def dump(self, disk: JobDisk, dest: Path) -> None:
        """Copy the disk's files into the empty folder `dest` (a checkpoint), read from the image after a
        flush: the caller keeps the job from writing meanwhile (paused, or ended). Raises JobDiskError."""
        if disk.image is None:
            raise JobDiskError("a checkpoint needs an ext4 job disk (this machine has no loop devices)")
        await _tool("sync")
        await _tool("debugfs", "-R", f"rdump / {dest}", str(disk.image))
        lost = dest / "lost+found"
        if lost.is_dir() and not any(lost.iterdir()):
            lost.rmdir()

    async def is_full(self, disk: JobDisk) -> bool:
        """Whether the job filled its disk. For ext4, read once the engine has unmounted the volume."""
        if disk.image is None:
            return False  # a tmpfs volume is gone with the container: nothing left to measure
        try:
            head = await _tool("dumpe2fs", "-h", str(disk.image))
        except JobDiskError as exc:
            log.warning("cannot read the disk of job %s: %s", disk.job_id, exc)
            return False
        fields = dict(re.findall(r"^(Block count|Free blocks|Block size):\s+(\d+)$", head, re.MULTILINE))
        total, free = int(fields.get("Block count", 0)), int(fields.get("Free blocks", 0))
        block = int(fields.get("Block size", 4096))
        return total > 0 and free * block < max(total * block * FULL_SHARE, FULL_BYTES)

    async def unmount(self, disk: JobDisk) -> None:
        """Unmount a disk mounted here, once its container is gone: its image is then whole and readable (a
        last checkpoint, whether it is full). A disk the engine mounted is unmounted with its container."""
        if disk.mount is not None:
            try:
                await asyncio.to_thread(loopdev.unmount, disk.mount)
            except OSError as exc:
                raise JobDiskError(str(exc)) from exc

    async def remove(self, disk: JobDisk) -> None:
        """Detach the loop device and delete the image, in a worker thread (freeing an image's blocks takes
        ms: not on the event loop). Never raises."""
        await asyncio.to_thread(_remove, disk)

    async def reattach(self, job_id: str) -> JobDisk | None:
        """The disk of a job whose container outlived the daemon (adopted after a restart): its image and
        the loop device it is still attached to; None when it has none (a tmpfs disk, or it is gone)."""
        image = self._image(job_id)
        try:
            size_mb = image.stat().st_size // 2**20
            attached = (await _tool("losetup", "-j", str(image))).splitlines()
        except (OSError, JobDiskError):
            return None
        if not attached:
            return None
        self._loops_work = True
        target = self._mount_point(job_id)
        return JobDisk(job_id, size_mb, image, attached[0].split(":", 1)[0], target if target.is_mount() else None)

    async def remove_leftovers(self, keep: frozenset[str] = frozenset()) -> None:
        """Detach and delete every image left in the directory (a crash mid-job), except the disks of the
        jobs in `keep` (adopted: their containers still run). Never raises."""
        if not self.directory.is_dir():
            return
        ready = {d.image for disks in self._ready.values() for d in disks}
        for image in self.directory.glob("*.img"):
            if image.stem in keep or image in ready:
                continue
            with contextlib.suppress(JobDiskError, OSError):
                await asyncio.to_thread(loopdev.unmount, self._mount_point(image.stem))
                for line in (await _tool("losetup", "-j", str(image))).splitlines():
                    await _tool("losetup", "-d", line.split(":", 1)[0])
            image.unlink(missing_ok=True)
        for target in self.directory.glob("*.mnt"):  # still mounted: a kept disk's
            if not target.is_mount():
                with contextlib.suppress(OSError):
                    target.rmdir()
