"""What a job asks for: the shape shared by the REST request, the quote and the peer deployment request.

Strict: wrong types and unknown fields are refused with the field named (pydantic), before any rule runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from dms import limits
from dms.artifacts.inputs import MAX_INPUTS, checkpoint_path_problem, path_problem, paths_problem, source_problem

ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMAGE_REF = r"^[a-z0-9][a-z0-9._/:@-]*$"
MODULE_REF = r"^[0-9a-f]{64}$"
MAX_DURATION_S = 7 * 24 * 3600

EnvKey = Annotated[str, StringConstraints(pattern=ENV_KEY, max_length=128)]
EnvValue = Annotated[str, StringConstraints(max_length=32_768)]
Arg = Annotated[str, StringConstraints(max_length=32_768)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class JobResources(Strict):
    cpu_mhz: int = Field(gt=0, le=limits.MAX_CPU_MHZ, description="CPU to reserve, MHz.")
    cores: float = Field(gt=0, le=limits.MAX_CORES, description="Container CPU limit in cores (fractional allowed).")
    memory_mb: int = Field(ge=6, le=limits.MAX_MEMORY_MB, description="Memory limit, MB (Docker's minimum is 6).")
    disk_mb: int = Field(
        64, ge=8, le=limits.MAX_DISK_MB, description="The job's writable /workspace, MB (the rest is read-only)."
    )
    gpus: int = Field(0, ge=0, le=limits.MAX_GPUS)
    vram_mb: int = Field(0, ge=0, le=limits.MAX_VRAM_MB, description="Minimum VRAM per GPU, MB.")
    gpu_vendor: Literal["nvidia", "amd"] | None = None


class JobInput(Strict):
    """One file the provider fetches before the job starts and mounts read-only at `/inputs/<path>`."""

    source: str = Field(min_length=1, max_length=2048, description="An artifact's sha256, or an http(s) URL.")
    path: str = Field(min_length=1, max_length=512, description="Where under /inputs, e.g. `data/a.csv`.")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if problem := source_problem(v):
            raise ValueError(problem)
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if problem := path_problem(v):
            raise ValueError(problem)
        return v


class JobCheckpoint(Strict):
    """Snapshot `path` every `interval_s` while the job runs, and when it ends (dms.artifacts.checkpoints)."""

    path: str = Field("/workspace", max_length=512, description="The folder to snapshot (dms mounts it).")
    interval_s: float = Field(ge=1, le=86_400, description="Seconds between snapshots.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if problem := checkpoint_path_problem(v):
            raise ValueError(problem)
        return v


class JobSpec(Strict):
    executor: Literal["docker", "wasm"] = Field("docker", description="How the job runs: a container or a WASM module.")
    image: str | None = Field(None, min_length=1, max_length=256, pattern=IMAGE_REF, description="docker jobs.")
    module: str | None = Field(
        None, pattern=MODULE_REF, description="wasm jobs: the module's sha256 (in the SP's module registry)."
    )
    args: list[Arg] = Field(default_factory=list, max_length=256, description="wasm jobs: the module's arguments.")
    fuel: int | None = Field(
        None, gt=0, le=2**62, description="wasm jobs: an instruction budget (wasmtime fuel); the job stops past it."
    )
    command: list[Arg] = Field(default_factory=list, max_length=256)
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict, max_length=256)
    resources: JobResources
    max_price: int = Field(ge=0, le=limits.MAX_WEI, description="The most the job may cost, wei.")
    duration_s: int = Field(gt=0, le=MAX_DURATION_S, description="Paid run time; the job is stopped after it.")
    max_rtt_ms: int | None = Field(
        None, ge=1, le=60_000, description="Only providers with a measured round trip at most this (ms)."
    )
    preferred_rtt_ms: int | None = Field(
        None, ge=1, le=60_000, description="Providers within this round trip (ms) rank first; soft."
    )
    inputs: list[JobInput] = Field(default_factory=list, max_length=MAX_INPUTS, description="Files under /inputs.")
    checkpoint: JobCheckpoint | None = None
    resume: Literal["never", "on-failure"] = Field(
        "never", description="on-failure: if the provider is lost, run again elsewhere from the latest checkpoint."
    )
    restore: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="A checkpoint (its sha256) unpacked into checkpoint.path first."
    )

    @model_validator(mode="after")
    def _fits_executor(self) -> JobSpec:
        if self.executor == "docker":
            if self.image is None:
                raise ValueError("a docker job needs an image")
            if self.module is not None or self.args or self.fuel is not None:
                raise ValueError("module, args and fuel are for wasm jobs (set executor to wasm)")
        else:
            if self.module is None:
                raise ValueError("a wasm job needs a module (its sha256)")
            if self.image is not None or self.command:
                raise ValueError("a wasm job takes module and args, not image and command")
            if self.resources.gpus:
                raise ValueError("a wasm job cannot use GPUs")
            if self.inputs or self.checkpoint is not None or self.restore is not None:
                raise ValueError("inputs, checkpoint and restore are for docker jobs")
        return self

    @property
    def runs(self) -> str:
        """What the executor runs: the image, or the module's sha256."""
        ref = self.image if self.executor == "docker" else self.module
        assert ref is not None  # checked above
        return ref

    @property
    def argv(self) -> list[str]:
        """The command of a container, or the arguments of a module."""
        return self.command if self.executor == "docker" else self.args

    @model_validator(mode="after")
    def _restore_needs_a_path(self) -> JobSpec:
        if self.restore is not None and self.checkpoint is None:
            raise ValueError("restore needs checkpoint (its path is where the checkpoint is unpacked)")
        return self

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: list[JobInput]) -> list[JobInput]:
        if problem := paths_problem([i.path for i in v]):
            raise ValueError(problem)
        return v
