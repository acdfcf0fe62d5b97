"""How long `nunet` takes to answer, beside `python -c pass` (the floor: the interpreter's own start-up).

Runs each command N times, interleaved, against a real onboarded daemon on loopback, and reports the median and
p95 wall time of the whole process. The CLI finds the daemon through $NUNET_DMS_URL (as with `--dms`) and,
separately, through its config file (which costs the config's validation).

    .venv/bin/python bench/cli.py [--rounds 20] [--write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, header, load_note, median, p95

from tests.conftest import PAYOUT
from tests.procs import DmsProcess, post

NUNET = str(Path(sys.executable).with_name("nunet"))
GOALS = {"nunet --help": 0.150, "nunet info": 0.250, "nunet peer list -d": 0.250}


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    note = load_note()
    with tempfile.TemporaryDirectory() as tmp:
        d = DmsProcess(Path(tmp), "cli-bench").start()
        try:
            m = d.get("/api/v1/onboarding/provisioned")
            body = {"memory": m["memory"] // 2, "cpu": m["cpu"] // 2, "channel": "nunet-test", "payment_addr": PAYOUT}
            post(d, "/onboarding/onboard", body)
            base = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "NUNET_"))}
            by_url = {**base, "NUNET_DMS_URL": d.url}
            by_config = {**base, "DMS_CONFIG": str(d.config)}
            runs: dict[str, tuple[list[str], dict[str, str]]] = {
                "python -c pass (floor)": ([sys.executable, "-c", "pass"], base),
                "nunet --help": ([NUNET, "--help"], base),
                "nunet info": ([NUNET, "info"], by_url),
                "nunet peer list -d": ([NUNET, "peer", "list", "-d"], by_url),
                "nunet info (daemon found through the config file)": ([NUNET, "info"], by_config),
            }
            for argv, env in runs.values():  # warm the page cache
                timed(argv, env)
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, (argv, env) in runs.items():
                    times[name].append(timed(argv, env))
        finally:
            d.stop()
    floor = median(times["python -c pass (floor)"])
    lines = [
        header("CLI response time"),
        "",
        f"{args.rounds} interleaved rounds of each command, whole process wall time, against an onboarded daemon on"
        f" loopback (found through $NUNET_DMS_URL unless said). {note}",
        "",
        "| command | median | p95 | ratio to floor | goal |",
        "|---|---|---|---|---|",
    ]
    for name, xs in times.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"< {goal * 1000:.0f} ms: {'met' if median(xs) < goal else 'MISSED'}"
        ms = f"{median(xs) * 1000:.0f} ms | {p95(xs) * 1000:.0f} ms"
        lines.append(f"| `{name}` | {ms} | {median(xs) / floor:.1f}x | {verdict} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with RESULTS.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
