"""Docker executor (aiodocker): sandboxed containers, labelled per instance and job, logs in batches.

Sandbox defaults: no network unless the operator allows it, every capability dropped, no-new-privileges,
a pids limit, memory (no swap) and CPU limits from the job's own request, no mounts, never privileged.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import struct
from typing import Any

import aiodocker
import aiohttp

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

LABEL_INSTANCE = "dms.instance"
LABEL_JOB = "dms.job"
ENGINE_TIMEOUT_S = 5.0
STDOUT, STDERR = 1, 2
SIGKILL_EXIT = 128 + 9


def container_config(spec: ContainerSpec, instance: str) -> dict[str, Any]:
    """The Docker API body for `spec`: pure, so the sandbox can be checked without an engine."""
    memory = spec.memory_mb * 2**20
    host: dict[str, Any] = {
        "NetworkMode": "default" if spec.network else "none",
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "PidsLimit": spec.pids_limit,
        "Memory": memory,
        "MemorySwap": memory,
        "NanoCpus": int(spec.cores * 1e9),
        "Binds": [],
        "Mounts": [
            {"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only} for m in spec.mounts
        ],
        "Devices": [],
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
        self._lock = asyncio.Lock()

    def add(self, is_stderr: bool, data: bytes) -> None:
        self._parts[is_stderr].append(self._decoders[is_stderr].decode(data))

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self, final: bool = False) -> None:
        async with self._lock:
            if final:
                for i in (0, 1):
                    self._parts[i].append(self._decoders[i].decode(b"", final=True))
            out, err = ("".join(p) for p in self._parts)
            for p in self._parts:
                p.clear()
            if out or err:
                await self._sink(LogChunk(out, err))


class DockerExecutor:
    """Runs jobs on a Docker engine. `instance` names this DMS in container labels."""

    def __init__(self, instance: str, url: str | None = None, log_batch_s: float = 0.2) -> None:
        self._instance = instance
        self._url = url
        self._batch_s = log_batch_s
        self._docker: aiodocker.Docker | None = None
        self._cancelled: set[str] = set()

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

    async def has_image(self, image: str) -> bool:
        try:
            await self._client().images.inspect(image)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise engine_error(exc, f"cannot inspect image {image}") from exc
        return True

    async def run(self, spec: ContainerSpec, on_logs: LogSink, on_start: StartHook | None = None) -> RunResult:
        docker = self._client()
        if not await self.has_image(spec.image):
            raise ImageMissing(f"image {spec.image} is not present on this machine")
        try:
            container = await docker.containers.create(
                container_config(spec, self._instance), name=f"dms-{self._instance[:12]}-{spec.job_id}"
            )
        except aiodocker.DockerError as exc:
            raise engine_error(exc, "the Docker engine refused the container") from exc
        try:
            return await self._start_and_wait(container, spec, on_logs, on_start)
        finally:
            self._cancelled.discard(spec.job_id)
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True)

    async def _start_and_wait(
        self,
        container: aiodocker.docker.DockerContainer,
        spec: ContainerSpec,
        on_logs: LogSink,
        on_start: StartHook | None,
    ) -> RunResult:
        if spec.job_id in self._cancelled:  # cancelled between admission and now
            return RunResult(-1, EndReason.CANCELLED)
        try:
            await container.start()
        except aiodocker.DockerError as exc:
            raise ExecutorError(f"the container did not start: {exc.message}") from exc
        if on_start is not None:
            await on_start()
        logs = asyncio.create_task(self._pump_logs(container, on_logs))
        timed_out = False
        try:
            status = await asyncio.wait_for(container.wait(), spec.timeout_s)
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
        if spec.job_id in self._cancelled:
            return RunResult(code, EndReason.CANCELLED)
        state = (await container.show()).get("State", {})
        # Docker on cgroup v1 does not always flag OOMKilled; a SIGKILL we did not send comes from the
        # kernel's OOM killer, the only thing inside the sandbox's limits that kills with it.
        oom = bool(state.get("OOMKilled")) or code == SIGKILL_EXIT
        return RunResult(code, EndReason.OOM_KILLED if oom else EndReason.EXITED)

    async def _pump_logs(self, container: aiodocker.docker.DockerContainer, on_logs: LogSink) -> None:
        """Follow the multiplexed log stream until the container stops; hand it on in batches."""
        batch = LogBatcher(on_logs, self._batch_s)
        ticker = asyncio.create_task(batch.tick())
        params = {"stdout": "1", "stderr": "1", "follow": "1"}
        try:
            async with self._client()._query(f"containers/{container.id}/logs", params=params, timeout=None) as resp:
                while True:
                    try:
                        kind, length = struct.unpack(">BxxxL", await resp.content.readexactly(8))
                        data = await resp.content.readexactly(length)
                    except asyncio.IncompleteReadError:
                        break
                    batch.add(kind == STDERR, data)
        finally:
            ticker.cancel()
            await batch.flush(final=True)

    async def cancel(self, job_id: str) -> None:
        self._cancelled.add(job_id)
        for c in await self._ours(job_id):
            with contextlib.suppress(aiodocker.DockerError):
                await c.kill()

    async def reconcile(self) -> list[Leftover]:
        found = []
        for c in await self._ours():
            info = await c.show()
            state = info.get("State", {})
            running = bool(state.get("Running"))
            found.append(
                Leftover(info["Config"]["Labels"][LABEL_JOB], running, None if running else state.get("ExitCode"))
            )
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True)
        return found

    async def _ours(self, job_id: str | None = None) -> list[aiodocker.docker.DockerContainer]:
        labels = [f"{LABEL_INSTANCE}={self._instance}"] + ([f"{LABEL_JOB}={job_id}"] if job_id else [])
        return list(await self._client().containers.list(all=True, filters=json.dumps({"label": labels})))
