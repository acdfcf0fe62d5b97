"""Docker executor (aiodocker): sandboxed containers, labelled per instance and job, logs in batches.

Sandbox defaults: no network unless the operator allows it, every capability dropped, no-new-privileges,
a pids limit, memory (no swap) and CPU limits from the job's own request, never privileged, no host
mounts but the ones dms prepares itself (`/inputs` read-only, `/outputs`). The root file system is
read-only; the job writes only to its own disk at `/workspace`, a volume of exactly its `disk_mb`
(`jobdisk.py`), which is also what its checkpoints are taken of. The engine's own copy of the logs is bounded (json-file
`max-size` x `max-file`). The container's config is built in `docker_config.py` (pure) and its output read
and batched in `docker_logs.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from dms.executor import loopdev
from dms.executor.base import (
    ContainerSpec,
    EndReason,
    ExecutorError,
    ExecutorUnavailable,
    ImageMissing,
    Leftover,
    LogSink,
    RunResult,
    StartHook,
)
from dms.executor.docker_config import (
    ENGINE_LOG_FILE_MB,
    ENGINE_LOG_FILES,
    LABEL_INSTANCE,
    LABEL_JOB,
    container_config,
    container_name,
)
from dms.executor.docker_logs import LogBatcher, LogEntry, attach, attached_output, engine_output, pump_logs
from dms.executor.jobdisk import JobDisk, JobDiskError, JobDisks

__all__ = [
    "ENGINE_LOG_FILES",
    "ENGINE_LOG_FILE_MB",
    "LABEL_INSTANCE",
    "LABEL_JOB",
    "DockerExecutor",
    "LogBatcher",
    "container_config",
    "container_name",
    "engine_error",
]

log = logging.getLogger(__name__)

ENGINE_TIMEOUT_S = 5.0
DISPOSE_AFTER_S = 0.1
"""How long after a run's end its container, volume and disk removal starts (in the background): usually
after the result is stored and sent, so that removal's CPU is not on the result's path (speed only)."""
IMAGE_MEMORY_S = 10.0
"""How long a found image is taken as still there without asking the engine again (DockerExecutor.has_image)."""
SIGKILL_EXIT = 128 + 9


def engine_error(exc: aiodocker.DockerError, doing: str) -> ExecutorError:
    """aiodocker reports an unreachable engine as status 900; everything else is the engine's answer."""
    if exc.status == 900:
        return ExecutorUnavailable(f"the Docker engine does not answer: {exc.message}")
    return ExecutorError(f"{doing}: {exc.message}")


class DockerExecutor:
    """Runs jobs on a Docker engine. `instance` names this DMS in container labels."""

    def __init__(
        self, instance: str, url: str | None = None, log_batch_s: float = 0.2, disk_dir: Path | None = None
    ) -> None:
        """`disk_dir` holds the running jobs' disk images (sparse files; a temporary folder when None)."""
        self._instance = instance
        self._disks = JobDisks(
            disk_dir or Path(tempfile.gettempdir()) / f"dms-disks-{instance[:12]}", self._engine_sees_our_mounts
        )
        self._url = url
        self._batch_s = log_batch_s
        self._docker: aiodocker.Docker | None = None
        self._cancelled: set[str] = set()
        self._live_disks: dict[str, JobDisk] = {}
        self._adopted: set[str] = set()
        self._images: dict[str, float] = {}
        """Images found on the engine, and when (time.monotonic)."""
        self._cleanups: set[asyncio.Task[None]] = set()

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._url)
            except AssertionError as exc:  # aiodocker's way of saying it found no socket and no DOCKER_HOST
                raise ExecutorUnavailable("no Docker engine found: no socket and DOCKER_HOST is not set") from exc
            except (aiodocker.DockerError, ValueError, OSError) as exc:
                raise ExecutorUnavailable(f"no Docker engine found: {exc}") from exc
        return self._docker

    def _engine_sees_our_mounts(self) -> bool:
        """Whether a disk mounted by this process is visible to the engine (blocking: asked once, in a thread)."""
        connector = self._client().connector
        return isinstance(connector, aiohttp.UnixConnector) and loopdev.shares_mounts_with(connector.path)

    async def settle(self) -> None:
        """Wait for the removals still running in the background (ended containers, volumes, disks)."""
        for cleanup in list(self._cleanups):
            with contextlib.suppress(Exception):
                await cleanup

    async def close(self) -> None:
        await self.settle()
        await self._disks.close()
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def available(self) -> str | None:
        try:
            await asyncio.wait_for(self._client().version(), ENGINE_TIMEOUT_S)
        except ExecutorUnavailable as exc:
            return str(exc)
        except aiodocker.DockerError as exc:
            return str(engine_error(exc, "the Docker engine answered with an error"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"the Docker engine does not answer: {exc or type(exc).__name__}"
        return None

    async def kinds(self) -> dict[str, str | None]:
        return {"docker": await self.available()}

    async def has_image(self, image: str) -> bool:
        """Whether the engine has `image`. A found image is remembered for IMAGE_MEMORY_S (admission and the
        run ask within ms of each other); a run whose image went meanwhile still fails as ImageMissing."""
        if time.monotonic() - self._images.get(image, -IMAGE_MEMORY_S) < IMAGE_MEMORY_S:
            return True
        try:
            await self._client().images.inspect(image)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                self._images.pop(image, None)
                return False
            raise engine_error(exc, f"cannot inspect image {image}") from exc
        self._images[image] = time.monotonic()
        return True

    async def run(self, spec: ContainerSpec, on_logs: LogSink, on_start: StartHook | None = None) -> RunResult:
        docker = self._client()
        if not await self.has_image(spec.image):
            raise ImageMissing(f"image {spec.image} is not present on this machine")
        try:
            seed = Path(spec.workspace_seed) if spec.workspace_seed else None
            disk = await self._disks.create(spec.job_id, spec.disk_mb, seed)
        except JobDiskError as exc:
            raise ExecutorError(f"cannot make the job's disk: {exc}") from exc
        name = container_name(self._instance, spec.job_id)
        self._live_disks[spec.job_id] = disk
        ended: aiodocker.docker.DockerContainer | None = None
        try:
            try:
                container = await docker.containers.create(container_config(spec, self._instance, disk), name=name)
            except aiodocker.DockerError as exc:
                if exc.status == 404:  # removed since it was checked (has_image remembers a found image)
                    self._images.pop(spec.image, None)
                    raise ImageMissing(f"image {spec.image} is not present on this machine") from exc
                raise engine_error(exc, "the Docker engine refused the container") from exc
            try:
                result = await self._start_and_wait(container, spec, on_logs, on_start)
            except BaseException:
                await self._delete_container(container)
                raise
            finally:
                self._cancelled.discard(spec.job_id)
            ended = container  # removed in the background, after the result (or by `_after`, to read the disk)
            return await self._after(spec.job_id, disk, result, spec.workspace_dump, container)
        finally:
            self._live_disks.pop(spec.job_id, None)
            self._dispose_later(disk, ended)

    def _dispose_later(self, disk: JobDisk, container: aiodocker.docker.DockerContainer | None) -> None:
        """Remove the job's ended container with its volume (if `_after` has not) and its disk. Tens of ms that
        are not part of the job's result: it runs in the background, and close() waits for it. A crash before it
        ran leaves them to the next start's `reconcile`, which removes every container and volume of ours."""
        cleanup = asyncio.create_task(self._dispose(disk, container))
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def _dispose(self, disk: JobDisk, container: aiodocker.docker.DockerContainer | None) -> None:
        # A short delay so the removal's CPU is mostly not spent while the result is stored and sent (a speed
        # matter only: removal is correct whenever it runs). The disk goes even when the container could not.
        await asyncio.sleep(DISPOSE_AFTER_S)
        try:
            if container is not None:
                await self._delete_container(container)
        except Exception as exc:  # the engine went away or timed out: the next start's reconcile removes them
            log.warning("could not remove job %s's container or volume: %s", disk.job_id, exc)
        finally:
            await self._disks.remove(disk)

    @staticmethod
    async def _delete_container(container: aiodocker.docker.DockerContainer) -> None:
        """Remove the container and its anonymous volume (the job's disk, then unmounted)."""
        with contextlib.suppress(aiodocker.DockerError):
            await container.delete(force=True, v=True)

    async def dump_workspace(self, job_id: str, dest: Path) -> None:
        """Copy a running job's /workspace into the empty folder `dest` (a checkpoint): the container is
        paused meanwhile (cgroup freezer), so the copy never catches a write half done. Raises ExecutorError."""
        disk = self._live_disks.get(job_id)
        if disk is None:
            raise ExecutorError(f"job {job_id} has no disk on this provider")
        container = self._client().containers.container(container_name(self._instance, job_id))
        try:
            await container.pause()
        except aiodocker.DockerError as exc:  # it has just ended: its last copy is taken after the end
            raise ExecutorError(f"job {job_id} is not running: {exc.message}") from exc
        try:
            await self._disks.dump(disk, dest)
        except JobDiskError as exc:
            raise ExecutorError(f"cannot read the job's disk: {exc}") from exc
        finally:
            with contextlib.suppress(aiodocker.DockerError):
                await container.unpause()

    async def _delete_volume(self, name: str) -> None:
        with contextlib.suppress(aiodocker.DockerError):
            async with self._client()._query(f"volumes/{name}", method="DELETE"):
                pass

    async def _start_and_wait(
        self,
        container: aiodocker.docker.DockerContainer,
        spec: ContainerSpec,
        on_logs: LogSink,
        on_start: StartHook | None,
    ) -> RunResult:
        if spec.job_id in self._cancelled:  # cancelled between admission and now
            return RunResult(-1, EndReason.CANCELLED)
        async with attach(self._client(), container.id) as attached:  # before the start: nothing missed
            try:
                await container.start()
            except aiodocker.DockerError as exc:
                raise ExecutorError(f"the container did not start: {exc.message}") from exc
            if spec.job_id in self._cancelled:  # cancelled while it started: that kill found nothing running
                with contextlib.suppress(aiodocker.DockerError):
                    await container.kill()
            if on_start is not None:
                await on_start()
            return await self._follow(container, spec.job_id, spec.timeout_s, on_logs, attached_output(attached))

    async def adopt(self, job_id: str) -> bool:
        """After a restart: whether this job's container is still running here. If so it is kept out of
        `reconcile` and is this executor's again: `follow` it to its end."""
        for c in await self._ours(job_id):
            if (await c.show()).get("State", {}).get("Running"):
                self._adopted.add(job_id)
                disk = await self._disks.reattach(job_id)
                if disk is not None:  # kept by `reconcile`, copied for checkpoints, read for its limit
                    self._live_disks[job_id] = disk
                return True
        return False

    async def follow(
        self, job_id: str, after_ns: int, on_logs: LogSink, timeout_s: float | None, workspace_dump: str | None = None
    ) -> RunResult:
        """Follow an adopted job's container from its log entry after `after_ns` to its end, as `run` does:
        then remove it, copy its disk into `workspace_dump` (its last checkpoint) and tell a full disk
        (DISK_LIMIT). Raises ExecutorError when it is gone."""
        disk = self._live_disks.get(job_id)
        try:
            containers = await self._ours(job_id)
            if not containers:
                raise ExecutorError(f"the container of job {job_id} is gone")
            logged = engine_output(self._client(), containers[0], after_ns)
            try:
                result = await self._follow(containers[0], job_id, timeout_s, on_logs, logged)
            finally:
                self._cancelled.discard(job_id)
                await self._delete_container(containers[0])
            return await self._after(job_id, disk, result, workspace_dump) if disk is not None else result
        finally:
            self._adopted.discard(job_id)
            self._live_disks.pop(job_id, None)
            if disk is not None:
                self._dispose_later(disk, None)

    async def _after(
        self, job_id: str, disk: JobDisk, result: RunResult, workspace_dump: str | None,
        container: aiodocker.docker.DockerContainer | None = None,
    ) -> RunResult:  # fmt: skip
        """Once the container has ended: its disk's last copy (a checkpoint) and whether it ended full, read
        once `container` (if still there) and the volume are removed. With neither to find out (no checkpoint
        asked, a clean exit) the disk is not read and goes in the background, with the container."""
        failed = result.reason == EndReason.EXITED and result.exit_code != 0
        if workspace_dump is None and not failed:
            return result
        if container is not None:
            await self._delete_container(container)  # its volume with it: a disk the engine mounted is unmounted
        try:
            await self._disks.unmount(disk)  # one mounted here: now its image is whole and readable
        except JobDiskError as exc:
            log.warning("job %s: its disk could not be unmounted to be read: %s", job_id, exc)
            return result
        if workspace_dump is not None:
            try:
                await self._disks.dump(disk, Path(workspace_dump))
            except JobDiskError as exc:
                log.warning("job %s: its last checkpoint could not be read: %s", job_id, exc)
        if failed and await self._disks.is_full(disk):
            return RunResult(result.exit_code, EndReason.DISK_LIMIT)
        return result

    async def _follow(
        self, container: aiodocker.docker.DockerContainer, job_id: str, timeout_s: float | None, on_logs: LogSink,
        entries: AsyncIterator[LogEntry],
    ) -> RunResult:  # fmt: skip
        logs = asyncio.create_task(pump_logs(entries, on_logs, self._batch_s))
        timed_out = False
        shown: asyncio.Task[dict[str, Any]] | None = None
        try:
            status = await asyncio.wait_for(container.wait(), timeout_s)
            if status.get("StatusCode") != 0:  # why it failed (OOM?), asked while the log tail is flushed
                shown = asyncio.create_task(container.show())
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(aiodocker.DockerError):
                await container.kill()
            status = await container.wait()
        finally:
            # The log stream ends when the container stops; give it a moment to flush the tail.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(logs), 5)
            logs.cancel()
        code = int(status.get("StatusCode", -1))
        if timed_out:
            return RunResult(code, EndReason.TIMEOUT)
        if shown is None:  # exit 0: it ran to its end (before any cancel hit), whatever else happened in it
            return RunResult(code, EndReason.EXITED)
        if job_id in self._cancelled:
            shown.cancel()
            return RunResult(code, EndReason.CANCELLED)
        state = (await shown).get("State", {})
        # Docker on cgroup v1 does not always flag OOMKilled; a SIGKILL we did not send comes from the
        # kernel's OOM killer, the only thing inside the sandbox's limits that kills with it.
        oom = bool(state.get("OOMKilled")) or code == SIGKILL_EXIT
        return RunResult(code, EndReason.OOM_KILLED if oom else EndReason.EXITED)

    async def cancel(self, job_id: str) -> None:
        self._cancelled.add(job_id)
        for c in await self._ours(job_id):
            with contextlib.suppress(aiodocker.DockerError):
                await c.kill()

    async def reconcile(self) -> list[Leftover]:
        found = []
        for c in await self._ours():
            info = await c.show()
            if info["Config"]["Labels"].get(LABEL_JOB) in self._adopted:
                continue
            state = info.get("State", {})
            running = bool(state.get("Running"))
            found.append(
                Leftover(info["Config"]["Labels"][LABEL_JOB], running, None if running else state.get("ExitCode"))
            )
            await self._delete_container(c)
        labels = json.dumps({"label": [f"{LABEL_INSTANCE}={self._instance}"]})
        volumes = await self._client()._query_json("volumes", params={"filters": labels})
        for v in volumes.get("Volumes") or []:
            await self._delete_volume(v["Name"])
        await self._disks.remove_leftovers(keep=frozenset(self._adopted))
        return found

    async def _ours(self, job_id: str | None = None) -> list[aiodocker.docker.DockerContainer]:
        labels = [f"{LABEL_INSTANCE}={self._instance}"] + ([f"{LABEL_JOB}={job_id}"] if job_id else [])
        return list(await self._client().containers.list(all=True, filters=json.dumps({"label": labels})))
