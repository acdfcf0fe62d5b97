"""The floor that the byte-moving benchmarks (artifacts.py, libp2p_stream.py) are measured against, and the
table they report in.

The floor is a plain TCP copy on loopback: a separate sender process writes a file's bytes into one TCP
connection on 127.0.0.1 in 1 MiB writes, and this process receives them into a file (no hashing, no
encryption, no framing).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import header, median

SENDER = """
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
with open(sys.argv[1], "rb") as f, conn:
    while block := f.read(1 << 20):
        conn.sendall(block)
"""

FLOOR_ROW = "plain TCP copy, sender process to file (floor)"


def tcp_copy(src: Path, dest: Path) -> float:
    """Seconds to move `src`'s bytes from a (started, listening) sender process into `dest` over one
    loopback TCP connection: from our connect to the last byte written."""
    proc = subprocess.Popen([sys.executable, "-c", SENDER, str(src)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn, dest.open("wb") as f:
        while block := conn.recv(1 << 20):
            f.write(block)
    elapsed = time.perf_counter() - t0
    proc.wait(timeout=30)
    return elapsed


Row = tuple[str, Sequence[float]]
"""A path's label and its times, one per round."""


def ratio_table(
    title: str, doc: str | None, note: str, mib: int, floor: Sequence[float], rows: Sequence[Row]
) -> list[str]:
    """The lines of a RESULTS.md section: the header, the benchmark's description (the second paragraph of
    its docstring), the rounds and the load, and one table row per path (median time, throughput, ratio of
    the floor's median to the path's), the floor first."""
    lines = [header(title), "", doc.split("\n\n")[1].replace("\n", " ") if doc else ""]
    lines += [f"{len(floor)} interleaved rounds. {note}", ""]
    lines += ["| path | median time | throughput | ratio to the floor |", "|---|---|---|---|"]
    for label, times in [(FLOOR_ROW, floor), *rows]:
        t = median(times)
        lines.append(f"| {label} | {t:.3f} s | {mib / t:.0f} MiB/s | {median(floor) / t:.3f} |")
    return [*lines, ""]
