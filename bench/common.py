"""Helpers shared by the benchmarks: the machine line, free ports, percentiles, appending to RESULTS.md, and
a folder of daemons stopped at the end.

Importing this module also puts the repository root on sys.path (the benchmarks run as `bench/<name>.py`,
which puts only bench/ there), so a benchmark can reuse the test harness (`tests.procs`, `tests.network`).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.procs import DmsProcess  # noqa: E402  (needs the root on sys.path)
from tests.procs import free_port as free_port  # noqa: E402


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = psutil.virtual_memory().total / 2**30
    return f"{model}, {psutil.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def header(title: str) -> str:
    """A RESULTS.md section header with the date and the machine."""
    return f"## {title} ({datetime.now(UTC):%Y-%m-%d}, {machine()})"


def load_note() -> str:
    """The 1-minute load average now: the machine may be shared with other work while a benchmark runs."""
    return f"Load average (1 min) when the run started: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p95(xs: Sequence[float]) -> float:
    """The 95th percentile (inclusive method: stays within the data for small samples)."""
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=20, method="inclusive")[18]


def append_results(text: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach figure beside its floor, measured in the same run.\n\n")
    with RESULTS.open("a") as f:
        f.write(text + "\n")


@contextmanager
def spawner() -> Iterator[tuple[Callable[..., DmsProcess], Path]]:
    """(make, folder) for a benchmark's daemons: make(name, **config) gives a daemon under a temporary
    folder; all are stopped at exit."""
    made: list[DmsProcess] = []
    with tempfile.TemporaryDirectory() as tmp:

        def make(name: str, **kw: Any) -> DmsProcess:
            made.append(DmsProcess(Path(tmp), name, **kw))
            return made[-1]

        try:
            yield make, Path(tmp)
        finally:
            for p in made:
                p.stop()
