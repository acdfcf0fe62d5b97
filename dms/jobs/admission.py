"""Can this node run this job? Pure checks over a snapshot; each refusal is a sentence for the SP.

"Can we run it" (sandbox, image, executor) and "is there room" (free reservation, GPUs) are separate
steps; the caller reserves atomically only after both pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dms.jobs.spec import JobSpec
from dms.onboarding.gpus import Gpu
from dms.onboarding.rules import Resources


@dataclass(frozen=True)
class SandboxAsk:
    """Sandbox-relevant fields a peer's deployment request may carry. Anything but the defaults is refused."""

    privileged: bool = False
    network_mode: str = "none"
    mounts: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()


def sandbox_refusals(ask: SandboxAsk, allow_network: bool) -> list[str]:
    refusals = []
    if ask.privileged:
        refusals.append("privileged mode is not allowed")
    if ask.mounts:
        refusals.append("host mounts are not allowed")
    if ask.cap_add:
        refusals.append(f"added capabilities are not allowed ({', '.join(ask.cap_add)})")
    if ask.devices:
        refusals.append("host devices are not allowed (GPUs are assigned by the provider)")
    if ask.network_mode == "host":
        refusals.append("host networking is not allowed")
    elif ask.network_mode not in ("none", "default"):
        refusals.append(f"network mode {ask.network_mode!r} is not allowed")
    elif ask.network_mode == "default" and not allow_network:
        refusals.append("this provider runs jobs without network")
    return refusals


@dataclass(frozen=True)
class NodeView:
    """The provider's state at the moment of the decision."""

    onboarded: bool
    available: bool
    executor_problem: str | None
    free: Resources
    machine_cores: int
    gpus: tuple[Gpu, ...]
    """Detected GPUs (their indexes are what `free.gpus` lists)."""
    image_allowlist: tuple[str, ...]
    image_present: bool
    """The job's image (a wasm job: its module) is on this machine."""
    working_executors: tuple[str, ...] = ("docker",)
    """The kinds of job this node runs now; `executor_problem` is about the kind the job asks for."""
    module_problem: str | None = None
    """Why the wasm job's module cannot run here (imports beyond WASI preview 1, ...)."""


def pick_gpus(free: Sequence[Gpu], count: int, vram_mb: int, vendor: str | None) -> tuple[Gpu, ...] | None:
    """The first `count` free GPUs that fit, or None when there are not enough."""
    fitting = [g for g in free if g.vram_mb >= vram_mb and vendor in (None, g.vendor)]
    if len(fitting) < count:
        return None
    chosen = fitting[:count]
    if len({g.vendor for g in chosen}) > 1:
        return None
    return tuple(chosen)


def refusal(node: NodeView, spec: JobSpec, ask: SandboxAsk, allow_network: bool) -> str | None:
    """Why the job cannot be admitted here, or None when it can."""
    if not node.onboarded:
        return "the provider is not onboarded"
    if not node.available:
        return "the provider is not accepting jobs"
    if node.executor_problem:
        others = [k for k in node.working_executors if k != spec.executor]
        if others:
            only = ", ".join(others)
            return f"this provider runs {only} jobs only: no working {spec.executor} executor ({node.executor_problem})"
        return f"the provider has no working executor: {node.executor_problem}"
    sandbox = sandbox_refusals(ask, allow_network)
    if sandbox:
        return "; ".join(sandbox)
    if spec.executor == "wasm":
        if not node.image_present:
            return f"module {spec.module} is not on the provider (it did not arrive with the job)"
        if node.module_problem:
            return node.module_problem
    elif node.image_allowlist and spec.image not in node.image_allowlist:
        return f"image {spec.image} is not on this provider's allow-list"
    elif not node.image_present:
        return f"image {spec.image} is not present on the provider and no registry is reachable"
    r = spec.resources
    if r.cores > node.machine_cores:
        return f"{r.cores} cores asked, the machine has {node.machine_cores}"
    if r.cpu_mhz > node.free.cpu_mhz:
        return f"not enough free CPU: {r.cpu_mhz} MHz asked, {node.free.cpu_mhz} free"
    if r.memory_mb > node.free.memory_mb:
        return f"not enough free memory: {r.memory_mb} MB asked, {node.free.memory_mb} free"
    if r.gpus:
        free_gpus = [g for g in node.gpus if g.index in node.free.gpus]
        if pick_gpus(free_gpus, r.gpus, r.vram_mb, r.gpu_vendor) is None:
            return f"not enough free GPUs: {r.gpus} asked with {r.vram_mb} MB VRAM, {len(free_gpus)} free"
    if r.disk_mb > node.free.disk_mb:
        return f"not enough free disk: {r.disk_mb} MB asked, {node.free.disk_mb} free"
    return None
