"""Artifact transfer between two daemons (`/dms/artifacts/1.0.0`) vs a plain TCP copy of the same bytes on
loopback.

Three nunet-dms processes on loopback: A holds the blobs; B and C bootstrap to A. B fetches with the
defaults (the bytes take the direct path: a one-off AES-256-GCM TCP connection offered on the libp2p
stream); C has `artifacts.direct: false`, so its bytes go through the libp2p stream itself (Noise and
yamux with dms.network.fastpath). Each round uploads a fresh random blob to A, then times B's and C's
`POST /api/v1/artifacts/{sha}/fetch` (the nodes are already connected; the time covers the request, the
libp2p stream, the bytes, the hashing and writing on arrival, and the answer). The floor, in the same
round: a separate sender process writes the same file's bytes into one TCP connection on 127.0.0.1 and
this process receives them into a file (no hashing, no encryption). Also in each round, the direct path
alone: `dms.artifacts.direct`'s Sender in a separate process and its Receiver here, hashing and writing
into a file (no daemon, no libp2p stream, no request): what the bytes cost without the fixed part.
And a second copy like the floor's but into a new file each round, kept: the floor rewrites one file,
whose pages come straight back, while each fetch stores a new blob, and on this VM writing a new file
that is kept can cost far more than the copy (docs/artifacts.md, "Transfer speed"). Rounds interleave the
five; medians reported.

Run: .venv/bin/python bench/artifacts.py [--mib 32] [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

from common import append_results, load_note, median
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401  (imported before any clock starts)
from floor import ratio_table, tcp_copy

from dms.artifacts import direct
from dms.artifacts.appender import Appender
from tests.procs import DmsProcess, wait_for

DIRECT_SENDER = """
import json, sys
from pathlib import Path
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dms.artifacts import direct
from dms.artifacts.appender import Appender
sender = direct.Sender("127.0.0.1")
print(json.dumps(sender.offer.to_json()), flush=True)
path = Path(sys.argv[1])
sender.send(path, 0, path.stat().st_size, 10.0)
sender.close()
"""


def direct_alone(src: Path, dest: Path, sha: str) -> float:
    """Seconds for the direct path's two ends alone to move `src` into `dest`, hashed: a (started, listening)
    Sender process, the Receiver here; from the connect to the last byte written and hashed."""
    proc = subprocess.Popen([sys.executable, "-c", DIRECT_SENDER, str(src)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    offer = direct.Offer.from_json(json.loads(proc.stdout.readline()))
    dest.unlink(missing_ok=True)
    digest = hashlib.sha256()
    t0 = time.perf_counter()
    with Appender(dest) as f:  # as the daemon writes a fetched blob
        got = direct.Receiver("127.0.0.1", offer).receive(f, digest, src.stat().st_size, 10.0)
    elapsed = time.perf_counter() - t0
    proc.wait(timeout=30)
    assert got == src.stat().st_size and digest.hexdigest() == sha
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
            fetched, p2p, tcp, alone, kept = [], [], [], [], []
            for i in range(args.rounds):
                data = os.urandom(size)
                sha = upload(a, data)
                src = root / "src.bin"
                src.write_bytes(data)
                tcp.append(tcp_copy(src, root / "dst.bin"))
                alone.append(direct_alone(src, root / "direct.bin", sha))
                kept.append(tcp_copy(src, root / f"kept{i}.bin"))
                fetched.append(fetch(b, sha, peer["peer_id"]))
                p2p.append(fetch(c, sha, peer["peer_id"]))
                for d in (b, c):
                    assert hashlib.sha256((d.data_dir / "artifacts" / "blobs" / sha).read_bytes()).hexdigest() == sha
            assert metric(b, "dms_artifact_transfers_direct_total") == args.rounds
            assert metric(c, "dms_artifact_transfers_direct_total") == 0
        finally:
            c.stop()
            b.stop()
            a.stop()

    rows = [
        ("fetch A to B, direct path (default; hashed, stored)", fetched),
        ("fetch A to C, bytes on the libp2p stream (`direct: false`)", p2p),
        ("direct path alone: Sender process to Receiver, hashed, to file", alone),
        ("plain TCP copy into a new file each round, kept (as a fetched blob is)", kept),
    ]
    title = f"Artifact transfer: {args.mib} MiB between two daemons, libp2p vs plain TCP"
    text = "\n".join([
        *ratio_table(title, __doc__, note, args.mib, tcp, rows),
        "Per round (floor / direct / libp2p / direct alone / copy kept, ms): "
        + ", ".join("/".join(f"{t * 1000:.0f}" for t in r) for r in zip(tcp, fetched, p2p, alone, kept, strict=True)),
        "",
        f"Fetch on the direct path against the copy into a kept file: {median(kept) / median(fetched):.3f}.",
        "",
        "Goal: at least 0.5 of the floor's throughput.",
        "",
    ])  # fmt: skip
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
