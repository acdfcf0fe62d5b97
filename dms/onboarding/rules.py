"""Pure reservation rules: what a compute provider may reserve for the network, checked without I/O.

CPU is counted in MHz (cores x clock, NuNet's unit), memory and disk in MB; a reservation must lie
between 10 % and 90 % of what the machine has, so the owner keeps a share and the network gets a useful
one. Disk is the file system of the data dir, where jobs' /workspace images live; NuNet has no disk
field, so an onboarding that does not name one reserves the smallest share (`default_disk_mb`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from dms.errors import FieldProblem
from dms.onboarding.gpus import Gpu

MIN_SHARE = 0.10
MAX_SHARE = 0.90


@dataclass(frozen=True)
class Provisioned:
    """What the machine has in total, as measured at start."""

    cpu_mhz: int
    cores: int
    memory_mb: int
    disk_mb: int
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True)
class Resources:
    """An amount of resources: a reservation, what jobs hold, or what is free."""

    cpu_mhz: int = 0
    memory_mb: int = 0
    gpus: tuple[int, ...] = field(default=())
    disk_mb: int = 0

    def minus(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_mhz - other.cpu_mhz,
            self.memory_mb - other.memory_mb,
            tuple(g for g in self.gpus if g not in other.gpus),
            self.disk_mb - other.disk_mb,
        )


def share_bounds(total: int) -> tuple[int, int]:
    """The smallest and largest reservation allowed out of `total` (inclusive, whole units)."""
    return math.ceil(total * MIN_SHARE), math.floor(total * MAX_SHARE)


def default_disk_mb(machine: Provisioned) -> int:
    """The disk reserved when the onboarding does not say: the smallest share allowed."""
    return share_bounds(machine.disk_mb)[0]


def check_reservation(machine: Provisioned, wanted: Resources) -> list[FieldProblem]:
    """Problems with reserving `wanted` on `machine`; empty when it is allowed.

    Field names are those of the onboarding request (`cpu`, `memory`, `disk`, `gpus`).
    """
    problems: list[FieldProblem] = []
    for name, amount, total, unit in (
        ("cpu", wanted.cpu_mhz, machine.cpu_mhz, "MHz"),
        ("memory", wanted.memory_mb, machine.memory_mb, "MB"),
        ("disk", wanted.disk_mb, machine.disk_mb, "MB"),
    ):
        low, high = share_bounds(total)
        if not low <= amount <= high:
            problems.append(
                FieldProblem(
                    name,
                    f"{amount} {unit} is outside the allowed reservation {low}-{high} {unit} "
                    f"(10-90 % of the machine's {total} {unit})",
                )
            )
    problems += check_gpu_choice(machine.gpus, wanted.gpus)
    return problems


def check_gpu_choice(detected: Sequence[Gpu], chosen: Sequence[int]) -> list[FieldProblem]:
    known = {g.index for g in detected}
    unknown = sorted(set(chosen) - known)
    problems = []
    if unknown:
        have = ", ".join(str(i) for i in sorted(known)) or "none"
        problems.append(FieldProblem("gpus", f"GPU {unknown} not detected on this machine (detected: {have})"))
    if len(set(chosen)) != len(chosen):
        problems.append(FieldProblem("gpus", "a GPU is listed twice"))
    return problems


def check_not_below_held(wanted: Resources, held: Resources) -> list[FieldProblem]:
    """A new reservation may not take away what running jobs already hold."""
    problems = []
    if wanted.cpu_mhz < held.cpu_mhz:
        problems.append(FieldProblem("cpu", f"running jobs hold {held.cpu_mhz} MHz; cannot reserve less"))
    if wanted.memory_mb < held.memory_mb:
        problems.append(FieldProblem("memory", f"running jobs hold {held.memory_mb} MB; cannot reserve less"))
    if wanted.disk_mb < held.disk_mb:
        problems.append(FieldProblem("disk", f"running jobs hold {held.disk_mb} MB of disk; cannot reserve less"))
    missing = sorted(set(held.gpus) - set(wanted.gpus))
    if missing:
        problems.append(FieldProblem("gpus", f"running jobs use GPU {missing}; keep them reserved"))
    return problems
