"""NuNet's job request (DeploymentRequest) as dms reads it: pure functions, no I/O.

NuNet's service provider prices a job itself, in NTX, from the request alone (the provider's own price
is never used), and refuses it when that estimate is above the client's `max_ntx`. Its compute provider
runs `image_id` with the command `[model_url, packages joined by spaces]`. Units: `cpu` in MHz, `ram` in
MB, `time` in minutes, `power` in W (docs/nunet-compatibility.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from dms import limits
from dms.errors import FieldProblem, InvalidInput
from dms.jobs.spec import JobResources, JobSpec

# NTX per minute by complexity (case-sensitive, as NuNet has them; anything else prices the rate at 0).
RATES = {"Low": 0.00008, "Moderate": 0.00016, "High": 0.00032}
POWER_RATE = 0.00016  # NTX per W per minute
ML_TYPES = ("ml-training-cpu", "ml-training-gpu")
NO_CAP = limits.MAX_WEI  # NuNet's request has no wei cap: max_ntx caps NuNet's own estimate instead


@dataclass(frozen=True)
class NuNetJob:
    """The parts of NuNet's DeploymentRequest that decide what runs and what it costs."""

    service_type: str
    max_ntx: int
    image_id: str
    model_url: str = ""
    packages: tuple[str, ...] = ()
    machine_type: str = ""
    complexity: str = ""
    cpu: int = 0
    ram: int = 0
    vram: int = 0
    power: int = 0
    time: int = 0
    address_user: str = ""


def estimated_price(complexity: str, time_min: int, power_w: int) -> float:
    """NuNet's estimate in NTX: rate x time + 0.00016 x power x time (Low, 30 min, 100 W -> 0.4824)."""
    return RATES.get(complexity, 0.0) * time_min + POWER_RATE * power_w * time_min


def command_of(job: NuNetJob) -> list[str]:
    """NuNet's container command: the model URL, then the packages joined by spaces, as two arguments."""
    return [job.model_url, " ".join(job.packages)]


def to_spec(job: NuNetJob, core_mhz: float) -> JobSpec:
    """dms's job for NuNet's request; InvalidInput names NuNet's fields for anything dms cannot run.

    `core_mhz` (one core's clock here) turns NuNet's MHz into the container's CPU limit in cores.
    """
    problems = []
    if job.service_type not in ML_TYPES:
        why = (
            "dms runs no Cardano nodes"
            if job.service_type == "cardano_node"
            else f"unknown service type {job.service_type!r}"
        )
        problems.append(FieldProblem("service_type", f"{why}; use {' or '.join(ML_TYPES)}"))
    for name, value, least in (("cpu", job.cpu, 1), ("ram", job.ram, 6), ("time", job.time, 1)):
        if value < least:
            problems.append(FieldProblem(f"constraints.{name}", f"must be at least {least}"))
    if not job.image_id:
        problems.append(FieldProblem("params.image_id", "the image to run is required"))
    if problems:
        raise InvalidInput.of(problems)
    price = estimated_price(job.complexity, job.time, job.power)
    if price > job.max_ntx:
        raise InvalidInput(
            "nunet estimation price is greater than client price",
            [{"field": "max_ntx", "message": f"the estimate is {price:g} NTX, max_ntx is {job.max_ntx}"}],
            code="price_above_max",
        )
    gpu = job.machine_type == "gpu" or job.service_type == "ml-training-gpu"
    cores = max(round(job.cpu / core_mhz, 2), 0.01) if core_mhz > 0 else 1.0
    try:
        return JobSpec(
            image=job.image_id,
            command=command_of(job),
            resources=JobResources(
                cpu_mhz=job.cpu, cores=cores, memory_mb=job.ram, gpus=1 if gpu else 0, vram_mb=job.vram if gpu else 0
            ),
            max_price=NO_CAP,
            duration_s=job.time * 60,
        )
    except ValidationError as exc:  # dms's own bounds (image name, sizes), named as NuNet's fields
        raise InvalidInput.of([FieldProblem(_nunet_field(e["loc"]), e["msg"]) for e in exc.errors()]) from exc


NUNET_FIELD = {
    "image": "params.image_id",
    "command": "params.model_url",
    "cpu_mhz": "constraints.cpu",
    "cores": "constraints.cpu",
    "memory_mb": "constraints.ram",
    "vram_mb": "constraints.vram",
    "duration_s": "constraints.time",
}


def _nunet_field(loc: tuple[int | str, ...]) -> str:
    names = [str(p) for p in loc if isinstance(p, str)]
    return NUNET_FIELD.get(names[-1], ".".join(names)) if names else "(body)"
