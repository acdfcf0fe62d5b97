"""Time from exec to READY=1 and idle RSS: nunet-dms beside a bare aiohttp app, in one run.

Both are started as processes with NOTIFY_SOCKET pointing at our datagram socket, exactly as systemd starts
them; READY=1 is the moment systemd would consider the service up. RSS is read 2 s after READY.
Usage: .venv/bin/python bench/startup.py [--runs N] [--write]  (--write appends to bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from common import free_port, machine

from dms.store.db import DB_NAME, migrate

HERE = Path(__file__).parent


def one_run(argv: list[str], workdir: Path) -> tuple[float, float]:
    """(seconds to READY=1, RSS in MB after 2 s idle)."""
    sock_path = str(workdir / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": sock_path}
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
            ready = time.perf_counter() - t0
            time.sleep(2)
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        os.unlink(sock_path)
    return ready, rss


def dms_argv(workdir: Path, whole_libp2p: bool = False, first_start: bool = False) -> list[str]:
    """The daemon, restarted on a store already at the current schema (a service's usual start) unless
    `first_start` (a new store: Alembic is loaded to create it); `whole_libp2p`: as before
    dms/network/lean.py (py-libp2p imported whole), for comparison."""
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"general": {"data_dir": str(workdir / "data")}, "rest": {"port": free_port()}}))
    if not first_start:
        (workdir / "data").mkdir()
        migrate(workdir / "data" / DB_NAME)
    if whole_libp2p:
        code = "import sys, dms.network.lean as l; l.install = lambda: None; from dms.daemon import main; main()"
        return [sys.executable, "-c", code, "--config", str(cfg)]
    return [sys.executable, "-m", "dms", "--config", str(cfg)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"bare aiohttp": [], "nunet-dms": [], "whole": [], "first": []}
    for _ in range(args.runs):  # interleaved, so all see the same machine state
        with tempfile.TemporaryDirectory() as d:
            results["bare aiohttp"].append(
                one_run([sys.executable, str(HERE / "bare_aiohttp.py"), str(free_port())], Path(d))
            )
        with tempfile.TemporaryDirectory() as d:
            results["nunet-dms"].append(one_run(dms_argv(Path(d)), Path(d)))
        with tempfile.TemporaryDirectory() as d:
            results["whole"].append(one_run(dms_argv(Path(d), whole_libp2p=True), Path(d)))
        with tempfile.TemporaryDirectory() as d:
            results["first"].append(one_run(dms_argv(Path(d), first_start=True), Path(d)))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(m for _, m in v)) for k, v in results.items()}
    bare, dms, whole, first = med["bare aiohttp"], med["nunet-dms"], med["whole"], med["first"]
    lines = [
        f"## Start-up and idle memory ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"Median of {args.runs} interleaved runs; READY = the sd_notify READY=1 datagram; RSS 2 s after READY."
        " The daemon starts on a store already at the current schema (every start but the first), except in"
        " the last row.",
        "",
        "| process | exec to READY | idle RSS |",
        "|---|---|---|",
        f"| bare aiohttp app (floor) | {bare[0]:.2f} s | {bare[1]:.0f} MB |",
        "| nunet-dms (store, onboarding, executor check, libp2p node up, REST; payments off)"
        f" | {dms[0]:.2f} s | {dms[1]:.0f} MB |",
        f"| ratio | {dms[0] / bare[0]:.1f}x | {dms[1] / bare[1]:.1f}x |",
        f"| the same, py-libp2p imported whole (before dms/network/lean.py) | {whole[0]:.2f} s | {whole[1]:.0f} MB |",
        f"| nunet-dms, first start (a new store: Alembic creates it) | {first[0]:.2f} s | {first[1]:.0f} MB |",
        "",
        "Goal (issue 14, item 7): READY under 1.5 s, idle RSS under 120 MB.",
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        out = HERE / "RESULTS.md"
        if not out.exists():
            out.write_text("# Benchmark results\n\nEach figure beside its floor, measured in the same run.\n\n")
        with out.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
