"""Reservation rules: pure functions, no I/O."""

from __future__ import annotations

from dms.onboarding.gpus import Gpu
from dms.onboarding.rules import (
    Provisioned,
    Resources,
    check_not_below_held,
    check_reservation,
    share_bounds,
)

MACHINE = Provisioned(
    cpu_mhz=10_000,
    cores=4,
    memory_mb=16_000,
    disk_mb=100_000,
    gpus=(Gpu(0, "nvidia", "A100", 81920), Gpu(1, "nvidia", "A100", 81920)),
)


def fields(problems: list) -> list[str]:  # type: ignore[type-arg]
    return [p.field for p in problems]


def test_bounds_are_ten_to_ninety_percent_inclusive() -> None:
    assert share_bounds(10_000) == (1_000, 9_000)
    assert share_bounds(15) == (2, 13)  # rounded inwards: never below 10 % or above 90 %


def test_edges_of_the_allowed_range() -> None:
    assert check_reservation(MACHINE, Resources(1_000, 1_600)) == []
    assert check_reservation(MACHINE, Resources(9_000, 14_400)) == []
    assert fields(check_reservation(MACHINE, Resources(999, 1_600))) == ["cpu"]
    assert fields(check_reservation(MACHINE, Resources(9_001, 14_401))) == ["cpu", "memory"]


def test_message_names_range_and_unit() -> None:
    (p,) = check_reservation(MACHINE, Resources(5_000, 100))
    assert p.field == "memory"
    assert "1600-14400 MB" in p.message and "16000 MB" in p.message


def test_gpus_only_among_detected() -> None:
    assert check_reservation(MACHINE, Resources(5_000, 8_000, (0, 1))) == []
    (p,) = check_reservation(MACHINE, Resources(5_000, 8_000, (2,)))
    assert p.field == "gpus" and "[2]" in p.message and "detected: 0, 1" in p.message
    assert fields(check_reservation(MACHINE, Resources(5_000, 8_000, (0, 0)))) == ["gpus"]


def test_not_below_what_jobs_hold() -> None:
    held = Resources(3_000, 4_000, (1,))
    assert check_not_below_held(Resources(3_000, 4_000, (1,)), held) == []
    assert fields(check_not_below_held(Resources(2_999, 3_999, ()), held)) == ["cpu", "memory", "gpus"]


def test_free_is_reservation_minus_held() -> None:
    free = Resources(5_000, 8_000, (0, 1)).minus(Resources(1_500, 500, (0,)))
    assert free == Resources(3_500, 7_500, (1,))
