"""Docker executor (aiodocker): sandboxed containers, labelled per instance and job, logs in batches.

Sandbox defaults: no network unless the operator allows it, every capability dropped, no-new-privileges,
a pids limit, memory (no swap) and CPU limits from the job's own request, never privileged, no host
mounts but the ones dms prepares itself (`/inputs` read-only, `/outputs`). The root file system is
read-only; the job writes only to its own disk at `/workspace`, a volume of exactly its `disk_mb`
(`jobdisk.py`), which is also what its checkpoints are taken of. The engine's own copy of the logs is bounded (json-file
`max-size` x `max-file`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import struct
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.stream import Stream

from dms.executor.base import (
    ContainerSpec,
    EndReason,
    ExecutorError,
    ExecutorUnavailable,
    ImageMissing,
    Leftover,
    LogChunk,
    LogSink,
    RunResult,
    StartHook,
)
from dms.executor.jobdisk import WORKSPACE, JobDisk, JobDiskError, JobDisks

log = logging.getLogger(__name__)

LABEL_INSTANCE = "dms.instance"
LABEL_JOB = "dms.job"
ENGINE_TIMEOUT_S = 5.0
IMAGE_MEMORY_S = 10.0
"""How long a found image is taken as still there without asking the engine again (DockerExecutor.has_image)."""
STDOUT, STDERR = 1, 2
SIGKILL_EXIT = 128 + 9
# The engine keeps its own copy of a job's output (the one `docker logs` and a restarted daemon read):
# at most ENGINE_LOG_FILES files of ENGINE_LOG_FILE_MB each, the oldest dropped first.
ENGINE_LOG_FILE_MB = 16
ENGINE_LOG_FILES = 2


def volume_name(instance: str, job_id: str) -> str:
    return f"dms-{instance[:12]}-{job_id}"


def container_config(spec: ContainerSpec, instance: str, disk: JobDisk | None = None) -> dict[str, Any]:
    """The Docker API body for `spec`: pure, so the sandbox can be checked without an engine.

    With `disk`, its volume is mounted at /workspace (a tmpfs disk adds its size to the memory limit,
    since its pages are charged to the container); without, the job has no writable space at all.
    """
    memory = (spec.memory_mb + (disk.memory_mb if disk else 0)) * 2**20
    mounts = []
    if disk is not None:  # the engine makes the named volume with the container (one call less than apart)
        options = {
            "Labels": {LABEL_INSTANCE: instance, LABEL_JOB: spec.job_id},
            "DriverConfig": {"Name": "local", "Options": disk.volume_options()},
        }
        name = volume_name(instance, spec.job_id)
        mounts.append({"Type": "volume", "Source": name, "Target": WORKSPACE, "VolumeOptions": options})
    host: dict[str, Any] = {
        "NetworkMode": "default" if spec.network else "none",
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "PidsLimit": spec.pids_limit,
        "Memory": memory,
        "MemorySwap": memory,
        "NanoCpus": int(spec.cores * 1e9),
        "ReadonlyRootfs": True,
        "Binds": [],
        "Mounts": mounts
        + [{"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only} for m in spec.mounts],
        "Devices": [],
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": f"{ENGINE_LOG_FILE_MB}m", "max-file": str(ENGINE_LOG_FILES)},
        },
    }
    if spec.gpus is not None and spec.gpus.vendor == "nvidia":
        host["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": list(spec.gpus.device_ids), "Capabilities": [["gpu"]]}
        ]
    elif spec.gpus is not None and spec.gpus.vendor == "amd":
        host["Devices"] = [
            {"PathOnHost": p, "PathInContainer": p, "CgroupPermissions": "rwm"} for p in ("/dev/kfd", "/dev/dri")
        ]
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": {LABEL_INSTANCE: instance, LABEL_JOB: spec.job_id},
        "HostConfig": host,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
    }
    if spec.command:
        config["Cmd"] = list(spec.command)
    return config


def engine_error(exc: aiodocker.DockerError, doing: str) -> ExecutorError:
    """aiodocker reports an unreachable engine as status 900; everything else is the engine's answer."""
    if exc.status == 900:
        return ExecutorUnavailable(f"the Docker engine does not answer: {exc.message}")
    return ExecutorError(f"{doing}: {exc.message}")


def split_timestamp(entry: bytes) -> tuple[int, bytes]:
    """(ns since the epoch, the output) of one log entry read with `timestamps=1` (RFC 3339, nanoseconds,
    then a space); (0, entry) when it has no timestamp."""
    head, sep, rest = entry.partition(b" ")
    if not sep or not head.endswith(b"Z") or b"T" not in head:
        return 0, entry
    try:
        seconds, _, fraction = head[:-1].decode().partition(".")
        whole = int(datetime.fromisoformat(seconds).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0, entry
    return whole * 10**9 + int((fraction + "000000000")[:9] or 0), rest


LogEntry = tuple[bool, bytes, int]
"""(from stderr, the bytes, ns since the epoch or 0) of one piece of a job's output."""

MAX_BATCH = 256 * 1024
"""Bytes of output a batch holds at most before it is handed on."""


class LogBatcher:
    """Collects stdout/stderr bytes and hands them on at most every `interval` seconds, in order."""

    def __init__(self, sink: LogSink, interval: float) -> None:
        self._sink = sink
        self._interval = interval
        self._decoders = (
            codecs.getincrementaldecoder("utf-8")("replace"),
            codecs.getincrementaldecoder("utf-8")("replace"),
        )
        self._parts: tuple[list[str], list[str]] = ([], [])
        self._size = 0
        self._until = 0
        self._lock = asyncio.Lock()

    def add(self, is_stderr: bool, data: bytes, at_ns: int = 0) -> None:
        self._parts[is_stderr].append(self._decoders[is_stderr].decode(data))
        self._size += len(data)
        self._until = max(self._until, at_ns)

    @property
    def full(self) -> bool:
        """Past MAX_BATCH bytes: the reader hands the batch on before it reads more (bounded memory)."""
        return self._size >= MAX_BATCH

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            # Shielded: stopping the ticker must not cut a batch off half-way through its sink (it was
            # taken out of the buffer already, so it would be lost); the final flush waits for it.
            await asyncio.shield(self.flush())

    async def flush(self, final: bool = False) -> None:
        async with self._lock:
            if final:
                for i in (0, 1):
                    self._parts[i].append(self._decoders[i].decode(b"", final=True))
            out, err = ("".join(p) for p in self._parts)
            for p in self._parts:
                p.clear()
            self._size = 0
            if out or err:
                await self._sink(LogChunk(out, err, self._until))


class DockerExecutor:
    """Runs jobs on a Docker engine. `instance` names this DMS in container labels."""

    def __init__(
        self, instance: str, url: str | None = None, log_batch_s: float = 0.2, disk_dir: Path | None = None
    ) -> None:
        """`disk_dir` holds the running jobs' disk images (sparse files; a temporary folder when None)."""
        self._instance = instance
        self._disks = JobDisks(disk_dir or Path(tempfile.gettempdir()) / f"dms-disks-{instance[:12]}")
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

    async def close(self) -> None:
        for cleanup in list(self._cleanups):
            with contextlib.suppress(Exception):
                await cleanup
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
        name = volume_name(self._instance, spec.job_id)
        self._live_disks[spec.job_id] = disk
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
            finally:
                self._cancelled.discard(spec.job_id)
                with contextlib.suppress(aiodocker.DockerError):
                    await container.delete(force=True)
            return await self._after(spec.job_id, disk, result, spec.workspace_dump)
        finally:
            self._live_disks.pop(spec.job_id, None)
            self._dispose_later(name, disk)

    def _dispose_later(self, volume: str, disk: JobDisk) -> None:
        """Remove the job's volume (if `_after` has not) and its disk. Tens of ms that are not part of the job's
        result: it runs in the background, and close() waits for it."""
        cleanup = asyncio.create_task(self._dispose(volume, disk))
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def _dispose(self, volume: str, disk: JobDisk) -> None:
        await self._delete_volume(volume)
        await self._disks.remove(disk)

    async def dump_workspace(self, job_id: str, dest: Path) -> None:
        """Copy a running job's /workspace into the empty folder `dest` (a checkpoint): the container is
        paused meanwhile (cgroup freezer), so the copy never catches a write half done. Raises ExecutorError."""
        disk = self._live_disks.get(job_id)
        if disk is None:
            raise ExecutorError(f"job {job_id} has no disk on this provider")
        container = self._client().containers.container(volume_name(self._instance, job_id))
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
        async with container.attach(stdout=True, stderr=True) as attached:  # before the start: nothing missed
            try:
                await container.start()
            except aiodocker.DockerError as exc:
                raise ExecutorError(f"the container did not start: {exc.message}") from exc
            if on_start is not None:
                await on_start()
            return await self._follow(container, spec.job_id, spec.timeout_s, on_logs, self._attached(attached))

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
            logged = self._logged(containers[0], after_ns)
            try:
                result = await self._follow(containers[0], job_id, timeout_s, on_logs, logged)
            finally:
                self._cancelled.discard(job_id)
                with contextlib.suppress(aiodocker.DockerError):
                    await containers[0].delete(force=True)
            return await self._after(job_id, disk, result, workspace_dump) if disk is not None else result
        finally:
            self._adopted.discard(job_id)
            self._live_disks.pop(job_id, None)
            if disk is not None:
                self._dispose_later(volume_name(self._instance, job_id), disk)
            else:
                await self._delete_volume(volume_name(self._instance, job_id))

    async def _after(self, job_id: str, disk: JobDisk, result: RunResult, workspace_dump: str | None) -> RunResult:
        """Once the container is gone: its disk's last copy (a checkpoint) and whether it ended full. With
        neither to find out (no checkpoint asked, a clean exit) the disk is not read and goes in the background."""
        failed = result.reason == EndReason.EXITED and result.exit_code != 0
        if workspace_dump is None and not failed:
            return result
        await self._delete_volume(volume_name(self._instance, job_id))  # the engine unmounts it: now readable
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
        logs = asyncio.create_task(self._pump_logs(entries, on_logs))
        timed_out = False
        shown: asyncio.Task[dict[str, Any]] | None = None
        try:
            status = await asyncio.wait_for(container.wait(), timeout_s)
            shown = asyncio.create_task(container.show())  # asked while the log tail is flushed
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
        assert shown is not None
        if job_id in self._cancelled and code != 0:  # exit 0: it ran to its end before the cancel hit
            shown.cancel()
            return RunResult(code, EndReason.CANCELLED)
        state = (await shown).get("State", {})
        # Docker on cgroup v1 does not always flag OOMKilled; a SIGKILL we did not send comes from the
        # kernel's OOM killer, the only thing inside the sandbox's limits that kills with it.
        oom = bool(state.get("OOMKilled")) or code == SIGKILL_EXIT
        return RunResult(code, EndReason.OOM_KILLED if oom else EndReason.EXITED)

    async def _pump_logs(self, entries: AsyncIterator[LogEntry], on_logs: LogSink) -> None:
        """Hand the job's output on in batches until the container stops."""
        batch = LogBatcher(on_logs, self._batch_s)
        ticker = asyncio.create_task(batch.tick())
        try:
            async for is_stderr, data, at_ns in entries:
                batch.add(is_stderr, data, at_ns)
                if batch.full:  # a flood: wait for the sink rather than buffer without bound
                    await batch.flush()
        finally:
            ticker.cancel()
            await batch.flush(final=True)

    @staticmethod
    async def _attached(stream: Stream) -> AsyncIterator[LogEntry]:
        """The live output of a container attached before its start: every byte exactly once. (The engine's
        own log copy is bounded by rotation, and a follower of it loses or repeats entries when a flood
        rotates the file under it.) Entries are stamped with their arrival time, for `follow` after a restart."""
        while (msg := await stream.read_out()) is not None:
            yield msg.stream == STDERR, msg.data, time.time_ns()

    async def _logged(self, container: aiodocker.docker.DockerContainer, after_ns: int) -> AsyncIterator[LogEntry]:
        """The engine's copy of an adopted container's output, from the entry after `after_ns` on."""
        params = {"stdout": "1", "stderr": "1", "follow": "1", "timestamps": "1"}
        if after_ns:
            params["since"] = str(after_ns // 10**9)  # whole seconds: the entries up to after_ns are skipped below
        async with self._client()._query(f"containers/{container.id}/logs", params=params, timeout=None) as resp:
            while True:
                try:
                    kind, length = struct.unpack(">BxxxL", await resp.content.readexactly(8))
                    data = await resp.content.readexactly(length)
                except asyncio.IncompleteReadError:
                    return
                at_ns, data = split_timestamp(data)
                if not at_ns or at_ns > after_ns:
                    yield kind == STDERR, data, at_ns

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
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True)
        labels = json.dumps({"label": [f"{LABEL_INSTANCE}={self._instance}"]})
        volumes = await self._client()._query_json("volumes", params={"filters": labels})
        for v in volumes.get("Volumes") or []:
            await self._delete_volume(v["Name"])
        await self._disks.remove_leftovers(keep=frozenset(self._adopted))
        return found

    async def _ours(self, job_id: str | None = None) -> list[aiodocker.docker.DockerContainer]:
        labels = [f"{LABEL_INSTANCE}={self._instance}"] + ([f"{LABEL_JOB}={job_id}"] if job_id else [])
        return list(await self._client().containers.list(all=True, filters=json.dumps({"label": labels})))
