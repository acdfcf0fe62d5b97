"""NuNet's job request as dms reads it: NuNet's price estimate, NuNet's command, NuNet's units."""

from __future__ import annotations

import pytest

from dms import limits
from dms.errors import InvalidInput
from dms.jobs.nunet import NuNetJob, command_of, estimated_price, to_spec


def job(**kw: object) -> NuNetJob:
    base: dict[str, object] = dict(
        service_type="ml-training-cpu", max_ntx=10, image_id="dms-test/busybox:1", model_url="echo",
        packages=("numpy", "torch"), complexity="Low", cpu=1000, ram=256, power=100, time=30,
    )  # fmt: skip
    return NuNetJob(**{**base, **kw})  # type: ignore[arg-type]


def test_price_is_nunets_estimate() -> None:
    assert estimated_price("Low", 30, 100) == 0.00008 * 30 + 0.00016 * 100 * 30
    assert round(estimated_price("Low", 30, 100), 10) == 0.4824  # NuNet's own worked example
    assert estimated_price("Moderate", 10, 0) == pytest.approx(0.0016)
    assert estimated_price("High", 10, 0) == pytest.approx(0.0032)
    assert estimated_price("low", 10, 0) == 0  # case-sensitive, as NuNet's; the power part still counts
    assert estimated_price("", 10, 50) == pytest.approx(0.08)


def test_command_and_units_are_nunets() -> None:
    spec = to_spec(job(), core_mhz=2000)
    assert command_of(job()) == ["echo", "numpy torch"] == spec.command
    assert spec.image == "dms-test/busybox:1"
    assert spec.resources.cpu_mhz == 1000 and spec.resources.cores == 0.5 and spec.resources.memory_mb == 256
    assert spec.duration_s == 30 * 60 and spec.resources.gpus == 0
    gpu = to_spec(job(service_type="ml-training-gpu", machine_type="gpu", vram=4096), core_mhz=2000)
    assert gpu.resources.gpus == 1 and gpu.resources.vram_mb == 4096


def test_max_ntx_caps_the_estimate() -> None:
    with pytest.raises(InvalidInput) as exc:
        to_spec(job(max_ntx=0), core_mhz=2000)
    assert exc.value.message == "nunet estimation price is greater than client price"
    assert "0.4824" in exc.value.details[0]["message"]
    assert to_spec(job(max_ntx=1), core_mhz=2000).max_price == limits.MAX_WEI  # max_ntx is the cap


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service_type": "cardano_node"}, "service_type"),
        ({"service_type": "ml-inference"}, "service_type"),
        ({"cpu": 0}, "constraints.cpu"),
        ({"ram": 0}, "constraints.ram"),
        ({"time": 0}, "constraints.time"),
        ({"image_id": ""}, "params.image_id"),
        ({"image_id": "Not An Image!"}, "params.image_id"),
    ],
)
def test_what_dms_cannot_run_names_nunets_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        to_spec(job(**change), core_mhz=2000)
    assert field in [d["field"] for d in exc.value.details], exc.value.details
