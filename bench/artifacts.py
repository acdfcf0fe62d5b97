"""Artifact transfer between two daemons (`/dms/artifacts/1.0.0`) vs a plain TCP copy of the same bytes on
loopback.

Three nunet-dms processes on loopback: A holds the blobs; B and C bootstrap to A. B fetches with the
defaults (the bytes take the direct path: a one-off AES-256-GCM TCP connection offered on the libp2p
stream); C has `artifacts.direct: false`, so its bytes go through the libp2p stream itself (Noise and
yamux with dms.network.fastpath). Each round uploads a fresh random blob to A, then times B's and C's
`POST /api/v1/artifacts/{sha}/fetch` (the nodes are already connected; the time covers the request, the
libp2p stream, the bytes, the hashing and writing on arrival, and the answer). The floor, in the same
round: a separate sender process writes the same file's bytes into one TCP connection on 127.0.0.1 and
this process receives them into a file (no hashing, no encryption). Rounds interleave the three; medians
reported.

Run: .venv/bin/python bench/artifacts.py [--mib 32] [--rounds 5] [--write]
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
from functools import partial
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


def connected_to(d: DmsProcess, peer_id: str) -> bool:
    return peer_id in {p["peer_id"] for p in d.get("/api/v1/peers")}


def metric(d: DmsProcess, name: str) -> float:
    with urllib.request.urlopen(d.url + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()
    note = load_note()
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = {"max_upload_mb": args.mib * 2, "quota_mb": args.mib * (args.rounds + 2) * 2}
        a = DmsProcess(root, "a", artifacts=big).start()
        peer = a.get("/api/v1/peers/self")
        boot = {"bootstrap_peers": [peer["addrs"][0]]}
        b = DmsProcess(root, "b", p2p=boot, artifacts=big).start()
        c = DmsProcess(root, "c", p2p=boot, artifacts={**big, "direct": False}).start()
        try:
            for d in (b, c):
                wait_for(partial(connected_to, d, peer["peer_id"]), 20, "B and C connect to A")
            direct, p2p, tcp = [], [], []
            for _ in range(args.rounds):
                data = os.urandom(size)
                sha = upload(a, data)
                src = root / "src.bin"
                src.write_bytes(data)
                tcp.append(tcp_copy(src, root / "dst.bin"))
                direct.append(fetch(b, sha, peer["peer_id"]))
                p2p.append(fetch(c, sha, peer["peer_id"]))
                for d in (b, c):
                    assert hashlib.sha256((d.data_dir / "artifacts" / "blobs" / sha).read_bytes()).hexdigest() == sha
            assert metric(b, "dms_artifact_transfers_direct_total") == args.rounds
            assert metric(c, "dms_artifact_transfers_direct_total") == 0
        finally:
            c.stop()
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
        "| path | median time | throughput | ratio to the floor |",
        "|---|---|---|---|",
        f"| plain TCP copy, sender process to file (floor) | {median(tcp):.3f} s | {mib_s(median(tcp)):.0f} MiB/s "
        "| 1 |",
        f"| fetch A to B, direct path (default; hashed, stored) | {median(direct):.3f} s "
        f"| {mib_s(median(direct)):.0f} MiB/s | {median(tcp) / median(direct):.3f} |",
        f"| fetch A to C, bytes on the libp2p stream (`direct: false`) | {median(p2p):.3f} s "
        f"| {mib_s(median(p2p)):.0f} MiB/s | {median(tcp) / median(p2p):.3f} |",
        "",
        "Per round (floor / direct / libp2p, ms): "
        + ", ".join(f"{t * 1000:.0f}/{d * 1000:.0f}/{p * 1000:.0f}" for t, d, p in zip(tcp, direct, p2p, strict=True)),
        "",
        "Goal: at least 0.5 of the floor's throughput.",
        "",
    ])  # fmt: skip
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
