"""What the bounded-JSON scan costs beside `json.loads` alone (the floor), on bodies up to the 1 MiB limit.

Each shape is parsed `--runs` times, floor and bounded interleaved; the figure is the median per parse.
Hostile shapes (100,000 deep, 5,000 digits) are refused by the scan alone: their time is the scan's.

Usage: .venv/bin/python bench/boundedjson.py [--runs N] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from common import append_results, header, load_note, median

from dms import boundedjson

SHAPES: dict[str, str] = {
    "a job request": json.dumps(
        {
            "image": "dms-test/busybox:1",
            "command": ["sh", "-c", "echo hi"],
            "env": {"A": "b"},
            "resources": {"cpu_mhz": 500, "cores": 0.5, "memory_mb": 64, "disk_mb": 64},
            "max_price": 10**18,
            "duration_s": 60,
        }
    ),
    "1 MB of small objects": json.dumps([{"k": "v[[", "n": [1, 2.5, None]} for _ in range(38_000)]),
    "1 MB of env strings": json.dumps({"env": {f"K{i}": "x" * 1000 for i in range(1000)}}),
}
HOSTILE = {"100,000 deep": "[" * 100_000 + "]" * 100_000, "5,000-digit integer": "[" + "9" * 5000 + "]"}


def timed(fn: Callable[[str], Any], text: str) -> float:
    start = time.perf_counter()
    with contextlib.suppress(ValueError, RecursionError):
        fn(text)
    return time.perf_counter() - start


def run(runs: int) -> str:
    rows = []
    for name, text in SHAPES.items():
        floor, ours = [], []
        for _ in range(runs):
            floor.append(timed(json.loads, text))
            ours.append(timed(boundedjson.loads, text))
        f, o = median(floor), median(ours)
        rows.append(f"| {name} | {len(text) / 1e3:.1f} kB | {f * 1e3:.3f} ms | {o * 1e3:.3f} ms | {o / f:.1f}x |")
    for name, text in HOSTILE.items():
        ours = [timed(boundedjson.loads, text) for _ in range(runs)]
        size, took = len(text) / 1e3, median(ours) * 1e3
        rows.append(f"| {name} (refused by the scan) | {size:.1f} kB | - | {took:.3f} ms | - |")
    return "\n".join(
        [
            header("Bounded JSON parsing: dms.boundedjson.loads beside json.loads"),
            "",
            f"Median of {runs} interleaved parses per shape, in one process. {load_note()}",
            "",
            "| body | size | json.loads (floor) | boundedjson.loads | ratio |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=21)
    p.add_argument("--write", action="store_true", help="append the result to bench/RESULTS.md")
    args = p.parse_args()
    text = run(args.runs)
    print(text)
    if args.write:
        append_results(text)
