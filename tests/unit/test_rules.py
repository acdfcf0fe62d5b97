"""Reservation rules: pure functions, no I/O."""

from __future__ import annotations

from dms.onboarding.gpus import Gpu
from dms.onboarding.rules import (
    Provisioned,
    Resources,
    check_not_below_held,
    check_reservation,
    default_disk_mb,
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
    assert check_reservation(MACHINE, Resources(1_000, 1_600, disk_mb=50_000)) == []
    assert check_reservation(MACHINE, Resources(9_000, 14_400, disk_mb=50_000)) == []
    assert fields(check_reservation(MACHINE, Resources(999, 1_600, disk_mb=50_000))) == ["cpu"]
    assert fields(check_reservation(MACHINE, Resources(9_001, 14_401, disk_mb=50_000))) == ["cpu", "memory"]


def test_message_names_range_and_unit() -> None:
    (p,) = check_reservation(MACHINE, Resources(5_000, 100, disk_mb=50_000))
    assert p.field == "memory"
    assert "1600-14400 MB" in p.message and "16000 MB" in p.message


def test_gpus_only_among_detected() -> None:
    assert check_reservation(MACHINE, Resources(5_000, 8_000, (0, 1), disk_mb=50_000)) == []
    (p,) = check_reservation(MACHINE, Resources(5_000, 8_000, (2,), disk_mb=50_000))
    assert p.field == "gpus" and "[2]" in p.message and "detected: 0, 1" in p.message
    assert fields(check_reservation(MACHINE, Resources(5_000, 8_000, (0, 0), disk_mb=50_000))) == ["gpus"]


def test_not_below_what_jobs_hold() -> None:
    held = Resources(3_000, 4_000, (1,))
    assert check_not_below_held(Resources(3_000, 4_000, (1,)), held) == []
    assert fields(check_not_below_held(Resources(2_999, 3_999, ()), held)) == ["cpu", "memory", "gpus"]


def test_free_is_reservation_minus_held() -> None:
    free = Resources(5_000, 8_000, (0, 1)).minus(Resources(1_500, 500, (0,)))
    assert free == Resources(3_500, 7_500, (1,))


def test_disk_is_reserved_and_kept_like_memory() -> None:
    assert default_disk_mb(MACHINE) == 10_000  # the smallest share, for onboardings that do not say
    (p,) = check_reservation(MACHINE, Resources(5_000, 8_000, disk_mb=95_000))
    assert p.field == "disk" and "10000-90000 MB" in p.message
    held = Resources(1_000, 1_000, disk_mb=2_000)
    (p,) = check_not_below_held(Resources(5_000, 8_000, disk_mb=1_999), held)
    assert p.field == "disk" and "2000 MB of disk" in p.message
    assert Resources(5_000, 8_000, disk_mb=9_000).minus(held) == Resources(4_000, 7_000, disk_mb=7_000)
