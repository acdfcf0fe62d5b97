"""What a job asks for: the shape shared by the REST request, the quote and the peer deployment request.

Strict: wrong types and unknown fields are refused with the field named (pydantic), before any rule runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from dms.artifacts.inputs import MAX_INPUTS, checkpoint_path_problem, path_problem, paths_problem, source_problem

ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMAGE_REF = r"^[a-z0-9][a-z0-9._/:@-]*$"
MAX_DURATION_S = 7 * 24 * 3600

EnvKey = Annotated[str, StringConstraints(pattern=ENV_KEY, max_length=128)]
EnvValue = Annotated[str, StringConstraints(max_length=32_768)]
Arg = Annotated[str, StringConstraints(max_length=32_768)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class JobResources(Strict):
    cpu_mhz: int = Field(gt=0, le=10_000_000, description="CPU to reserve, MHz.")
    cores: float = Field(gt=0, le=1024, description="Container CPU limit in cores (fractional allowed).")
    memory_mb: int = Field(ge=6, le=16_777_216, description="Memory limit, MB (Docker's minimum is 6).")
    gpus: int = Field(0, ge=0, le=64)
    vram_mb: int = Field(0, ge=0, description="Minimum VRAM per GPU, MB.")
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
    image: str = Field(min_length=1, max_length=256, pattern=IMAGE_REF)
    command: list[Arg] = Field(default_factory=list, max_length=256)
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict, max_length=256)
    resources: JobResources
    max_price: int = Field(ge=0, description="The most the job may cost, wei.")
    duration_s: int = Field(gt=0, le=MAX_DURATION_S, description="Paid run time; the job is stopped after it.")
    inputs: list[JobInput] = Field(default_factory=list, max_length=MAX_INPUTS, description="Files under /inputs.")
    checkpoint: JobCheckpoint | None = None
    resume: Literal["never", "on-failure"] = Field(
        "never", description="on-failure: if the provider is lost, run again elsewhere from the latest checkpoint."
    )
    restore: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="A checkpoint (its sha256) unpacked into checkpoint.path first."
    )

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
