"""CP admission as pure checks: each refusal is a sentence naming what was wrong."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from dms.jobs.admission import NodeView, SandboxAsk, pick_gpus, refusal
from dms.jobs.spec import JobSpec
from dms.onboarding.gpus import Gpu
from dms.onboarding.rules import Resources

GPUS = (Gpu(0, "nvidia", "A100", 81920), Gpu(1, "nvidia", "T4", 15360), Gpu(2, "amd", "MI210", 65536))
NODE = NodeView(
    onboarded=True,
    available=True,
    executor_problem=None,
    free=Resources(4000, 8000, (0, 1, 2), disk_mb=10_000),
    machine_cores=4,
    gpus=GPUS,
    image_allowlist=(),
    image_present=True,
)


def job(**res: object) -> JobSpec:
    resources = {"cpu_mhz": 1000, "cores": 0.5, "memory_mb": 256, **res}
    return JobSpec.model_validate(
        {"image": "dms-test/busybox:1", "command": ["true"], "resources": resources, "max_price": 0, "duration_s": 60}
    )


def test_a_fitting_job_is_admitted() -> None:
    assert refusal(NODE, job(), SandboxAsk(), allow_network=False) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"onboarded": False}, "not onboarded"),
        ({"available": False}, "not accepting jobs"),
        ({"executor_problem": "the Docker engine does not answer"}, "no working executor: the Docker engine"),
        ({"image_allowlist": ("other:1",)}, "not on this provider's allow-list"),
        ({"image_present": False}, "not present on the provider"),
        ({"free": Resources(500, 8000, disk_mb=10_000)}, "not enough free CPU: 1000 MHz asked, 500 free"),
        ({"free": Resources(4000, 100, disk_mb=10_000)}, "not enough free memory: 256 MB asked, 100 free"),
        ({"free": Resources(4000, 8000, disk_mb=63)}, "not enough free disk: 64 MB asked, 63 free"),
    ],
)
def test_node_state_refusals(change: dict[str, object], expected: str) -> None:
    reason = refusal(dataclasses.replace(NODE, **change), job(), SandboxAsk(), allow_network=False)  # type: ignore[arg-type]
    assert reason is not None and expected in reason


@pytest.mark.parametrize(
    ("ask", "expected"),
    [
        (SandboxAsk(privileged=True), "privileged mode is not allowed"),
        (SandboxAsk(mounts=("/:/host",)), "host mounts"),
        (SandboxAsk(cap_add=("SYS_ADMIN",)), "SYS_ADMIN"),
        (SandboxAsk(devices=("/dev/sda",)), "host devices"),
        (SandboxAsk(network_mode="host"), "host networking"),
        (SandboxAsk(network_mode="default"), "without network"),
    ],
)
def test_sandbox_refusals(ask: SandboxAsk, expected: str) -> None:
    reason = refusal(NODE, job(), ask, allow_network=False)
    assert reason is not None and expected in reason


def test_network_when_the_operator_allows_it() -> None:
    assert refusal(NODE, job(), SandboxAsk(network_mode="default"), allow_network=True) is None


def test_cores_above_the_machine() -> None:
    assert "5.0 cores asked, the machine has 4" in (refusal(NODE, job(cores=5.0), SandboxAsk(), False) or "")


def test_gpus() -> None:
    assert pick_gpus(GPUS, 1, 20000, "nvidia") == (GPUS[0],)
    assert pick_gpus(GPUS, 2, 1000, "nvidia") == GPUS[:2]
    assert pick_gpus(GPUS, 2, 20000, None) is None  # an A100 and an MI210 are not one vendor
    assert pick_gpus(GPUS, 3, 0, "amd") is None
    node = dataclasses.replace(NODE, free=Resources(4000, 8000, (1,)))
    assert "not enough free GPUs" in (refusal(node, job(gpus=1, vram_mb=20000), SandboxAsk(), False) or "")


@pytest.mark.parametrize(
    "bad",
    [
        {"image": "UPPER/case"},
        {"env": {"1BAD": "x"}},
        {"resources": {"cpu_mhz": "1000", "cores": 1.0, "memory_mb": 256}},
        {"resources": {"cpu_mhz": 1000, "cores": 0, "memory_mb": 256}},
        {"privileged": True},
        {"duration_s": 0},
    ],
)
def test_spec_refuses_bad_shapes(bad: dict[str, object]) -> None:
    base = job().model_dump()
    with pytest.raises(ValidationError):
        JobSpec.model_validate({**base, **bad})
