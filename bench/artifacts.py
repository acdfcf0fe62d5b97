"""Artifact transfer between two daemons over libp2p (`/dms/artifacts/1.0.0`) vs a plain TCP copy of the
same bytes on loopback.

Two nunet-dms processes on loopback, B bootstrapping to A. Each round uploads a fresh random blob to A,
then times B's `POST /api/v1/artifacts/{sha}/fetch` (dial already done: the nodes are connected; the
time covers the request, the libp2p stream, B's hashing and writing, and the answer). The floor, in the
same round: a separate sender process writes the same file's bytes into one TCP connection on 127.0.0.1
and this process receives them into a file (no hashing). Rounds interleave the two; medians reported.

Run: .venv/bin/python bench/artifacts.py [--mib 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import append_results, header, load_note, median

from tests.procs import DmsProcess, wait_for

SENDER = """
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
with open(sys.argv[1], "rb") as f, conn:
    while block := f.read(1 << 20):
        conn.sendall(block)
"""


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


def upload(d: DmsProcess, data: bytes) -> str:
    req = urllib.request.Request(d.url + "/api/v1/artifacts", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        return str(json.load(r)["sha256"])


def fetch(d: DmsProcess, sha: str, peer: str) -> float:
    body = json.dumps({"peer_id": peer}).encode()
    req = urllib.request.Request(
        f"{d.url}/api/v1/artifacts/{sha}/fetch", data=body, headers={"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        json.load(r)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = ap.parse_args()
    note = load_note()
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = {"max_upload_mb": args.mib * 2, "quota_mb": args.mib * (args.rounds + 2) * 2}
        a = DmsProcess(root, "a", artifacts=big).start()
        peer = a.get("/api/v1/peers/self")
        b = DmsProcess(root, "b", p2p={"bootstrap_peers": [peer["addrs"][0]]}, artifacts=big).start()
        try:
            wait_for(lambda: peer["peer_id"] in {p["peer_id"] for p in b.get("/api/v1/peers")}, 20,
                     "B connects to A")  # fmt: skip
            p2p, tcp = [], []
            for _ in range(args.rounds):
                data = os.urandom(size)
                sha = upload(a, data)
                src = root / "src.bin"
                src.write_bytes(data)
                tcp.append(tcp_copy(src, root / "dst.bin"))
                p2p.append(fetch(b, sha, peer["peer_id"]))
                assert hashlib.sha256((b.data_dir / "artifacts" / "blobs" / sha).read_bytes()).hexdigest() == sha
        finally:
            b.stop()
            a.stop()

    def mib_s(t: float) -> float:
        return float(args.mib) / t

    text = "\n".join([
        header(f"Artifact transfer: {args.mib} MiB between two daemons, libp2p vs plain TCP"),
        "",
        __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        f"{args.rounds} interleaved rounds. {note}",
        "",
        "| path | median time | throughput |",
        "|---|---|---|",
        f"| plain TCP copy, sender process to file (floor) | {median(tcp):.3f} s | {mib_s(median(tcp)):.0f} MiB/s |",
        f"| /dms/artifacts/1.0.0 fetch, A to B (hashed, stored) | {median(p2p):.3f} s "
        f"| {mib_s(median(p2p)):.1f} MiB/s |",
        f"| ratio (libp2p throughput / floor) | {median(tcp) / median(p2p):.3f} | |",
        "",
        "Goal: at least 0.5 of the floor's throughput.",
        "",
    ])  # fmt: skip
    print(text)
    if not args.no_write:
        append_results(text)


if __name__ == "__main__":
    main()
