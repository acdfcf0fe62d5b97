"""The executor contract: how a job's container is run, independent of the engine.

Whether a job may run (admission) and whether there is room (capacity) are decided before an executor
is called; an executor only runs what it is given, inside the limits it is given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable


class ExecutorError(Exception):
    """The job could not be run; the message says why in words a user can act on."""


class ExecutorUnavailable(ExecutorError):
    """The engine does not answer (not installed, not running, no permission on its socket)."""


class ImageMissing(ExecutorError):
    """The image is not present on this machine, and no registry is reachable to pull it."""


@dataclass(frozen=True)
class GpuAssignment:
    vendor: str
    """"nvidia" or "amd"."""
    device_ids: tuple[str, ...]


@dataclass(frozen=True)
class Mount:
    """A host folder dms itself prepared for the job (its inputs, its outputs); never one a job asked for."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    job_id: str
    image: str
    """The image; for a `wasm` job the module's sha256 (a name Docker never accepts for an image)."""
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cores: float = 1.0
    """CPU limit in cores (fractional allowed); the MHz reservation is the scheduler's business."""
    memory_mb: int = 256
    disk_mb: int = 64
    """Size of the job's only writable space, `/workspace` (the root file system is read-only)."""
    pids_limit: int = 256
    timeout_s: float | None = None
    network: bool = False
    gpus: GpuAssignment | None = None
    kind: str = "docker"
    """The executor that runs it: "docker" or "wasm"."""
    fuel: int | None = None
    """wasm: an instruction budget (wasmtime fuel), or None."""
    mounts: tuple[Mount, ...] = ()
    workspace_seed: str | None = None
    """A host folder copied onto the job's disk before it starts (a restored checkpoint)."""
    workspace_dump: str | None = None
    """A host folder the job's disk is copied into once the job has ended (its last checkpoint)."""


@dataclass(frozen=True)
class LogChunk:
    stdout: str = ""
    stderr: str = ""
    until_ns: int = 0
    """The engine's timestamp (ns since the epoch) of the last output in this chunk, where an adopted job's
    log resumes after a restart (Docker); 0 when the engine keeps none."""


class EndReason(StrEnum):
    EXITED = "exited"
    OOM_KILLED = "oom-killed"
    DISK_LIMIT = "disk-limit"
    """Exited with an error after filling its `/workspace`."""
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    reason: EndReason
    detail: str | None = None
    """Why it ended, in words, when the executor knows more than the reason (a trap, the memory limit)."""


@dataclass(frozen=True)
class Leftover:
    """A container of ours found at start-up: what became of a job while the daemon was down."""

    job_id: str
    running: bool
    exit_code: int | None


LogSink = Callable[[LogChunk], Awaitable[None]]
StartHook = Callable[[], Awaitable[None]]


class Executor(Protocol):
    async def available(self) -> str | None:
        """None when the engine answers; otherwise why it does not."""

    async def kinds(self) -> dict[str, str | None]:
        """Each kind of job this runs ("docker", "wasm"), with None when it works, or why it does not."""

    async def has_image(self, image: str) -> bool:
        """Whether `image` (a wasm job's module sha256) is present locally. Raises ExecutorUnavailable."""

    async def run(self, spec: ContainerSpec, on_logs: LogSink, on_start: StartHook | None = None) -> RunResult:
        """Create, start and wait for the container; stream its logs in batches; always remove it.

        `on_start` is awaited once the container runs.
        Raises ImageMissing, ExecutorUnavailable, or ExecutorError (e.g. the engine refused the spec).
        """

    async def cancel(self, job_id: str) -> None:
        """Stop the job's container if it runs; `run` then returns with EndReason.CANCELLED."""

    async def reconcile(self) -> list[Leftover]:
        """Report and remove every container of this instance left from before a restart."""


@runtime_checkable
class HasWorkspace(Protocol):
    """An executor whose jobs have a disk at /workspace that can be copied out while they run (checkpoints)."""

    async def dump_workspace(self, job_id: str, dest: Path) -> None:
        """Copy the running job's /workspace into the empty folder `dest`. Raises ExecutorError (no such
        job running, or its disk cannot be read)."""


@runtime_checkable
class Adopting(Protocol):
    """An executor whose jobs outlive its process (Docker: containers keep running across a restart)."""

    async def adopt(self, job_id: str) -> bool:
        """Whether the job's container still runs here; if so it is the executor's again (not reconciled)."""

    async def follow(
        self, job_id: str, after_ns: int, on_logs: LogSink, timeout_s: float | None, workspace_dump: str | None = None
    ) -> RunResult:
        """Its output after engine time `after_ns`, then its result, as `Executor.run` gives them (its disk
        copied into `workspace_dump` at the end, as `ContainerSpec.workspace_dump`)."""
