"""CPU clock discovery: psutil first, /proc/cpuinfo when psutil reports nothing."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from dms.onboarding import hardware

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B13
cpu MHz\t\t: 2449.998
processor\t: 1
cpu MHz\t\t: 2600.000
"""

Freq = namedtuple("Freq", "current min max")


def test_cpuinfo_mhz_takes_the_highest() -> None:
    assert hardware.cpuinfo_mhz(CPUINFO) == 2600.0
    assert hardware.cpuinfo_mhz("processor : 0\nBogoMIPS : 50.00\n") == 0.0


def test_fallback_to_cpuinfo_when_psutil_has_no_frequency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    monkeypatch.setattr(psutil, "cpu_freq", lambda: None)
    assert hardware.cpu_clock_mhz(info) == 2600.0
    monkeypatch.setattr(psutil, "cpu_freq", lambda: Freq(0.0, 0.0, 0.0))
    assert hardware.cpu_clock_mhz(info) == 2600.0
    monkeypatch.setattr(psutil, "cpu_freq", lambda: Freq(1800.0, 800.0, 3500.0))
    assert hardware.cpu_clock_mhz(info) == 3500.0


def test_measure_this_machine(tmp_path: Path) -> None:
    m = hardware.measure(tmp_path, gpus=[])
    assert m.cores == psutil.cpu_count()
    assert m.cpu_mhz >= m.cores * 100
    assert m.memory_mb == psutil.virtual_memory().total // 2**20
    assert m.disk_mb > 0 and m.gpus == ()
