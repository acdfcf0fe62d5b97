"""Measure the machine: CPU cores and clock, memory, disk (psutil) and GPUs (gpus.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psutil

from dms.onboarding.gpus import Gpu, detect_gpus
from dms.onboarding.rules import Provisioned

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
_MHZ_LINE = re.compile(r"^cpu MHz\s*:\s*([0-9.]+)", re.MULTILINE)


def cpuinfo_mhz(text: str) -> float:
    """The highest `cpu MHz` in /proc/cpuinfo text; 0 when there is none (e.g. some ARM kernels)."""
    values = [float(v) for v in _MHZ_LINE.findall(text)]
    return max(values, default=0.0)


def cpu_clock_mhz(cpuinfo: Path = CPUINFO) -> float:
    """The per-core clock: psutil's max (or current) frequency, else /proc/cpuinfo.

    psutil reports nothing in many VMs and containers, where /proc/cpuinfo still has the clock.
    """
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        freq = None
    if freq is not None and (freq.max or freq.current):
        return float(freq.max or freq.current)
    try:
        return cpuinfo_mhz(cpuinfo.read_text())
    except OSError as exc:
        log.warning("cannot read %s: %s", cpuinfo, exc)
        return 0.0


def measure(data_dir: Path, gpus: list[Gpu] | None = None) -> Provisioned:
    """What this machine has in total. `gpus` may be given to skip the (slow) GPU probe."""
    cores = psutil.cpu_count(logical=True) or 1
    clock = cpu_clock_mhz()
    if clock <= 0:
        log.warning("CPU clock unknown; counting 1000 MHz per core")
        clock = 1000.0
    return Provisioned(
        cpu_mhz=int(cores * clock),
        cores=cores,
        memory_mb=psutil.virtual_memory().total // 2**20,
        disk_mb=psutil.disk_usage(str(data_dir)).total // 2**20,
        gpus=tuple(detect_gpus() if gpus is None else gpus),
    )
