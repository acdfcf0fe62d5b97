"""The one price function (docs/jobs.md: Price), used by matching, quotes and payment checks."""

from __future__ import annotations

MHZ_UNIT = 1000


def job_price(ntx_price: int, cpu_mhz: int, duration_s: int) -> int:
    """Wei for running `cpu_mhz` for `duration_s` at `ntx_price` wei per second per 1,000 MHz, rounded up.

    Integer arithmetic throughout: wei amounts exceed what a float holds exactly.
    """
    if ntx_price < 0 or cpu_mhz < 0 or duration_s < 0:
        raise ValueError("price inputs must not be negative")
    return -(-ntx_price * cpu_mhz * duration_s // MHZ_UNIT)
