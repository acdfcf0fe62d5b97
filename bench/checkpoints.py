"""A checkpoint's cost to the running job.

Two nunet-dms processes on loopback (CP and SP, p2p.heartbeat_s 1). The job writes 8 MiB of random bytes
into /workspace, then counts to N in the shell, and prints the time its counting took, read from
/proc/uptime inside the container (10 ms resolution). Each round runs it once with
`checkpoint: {path: /workspace, interval_s: 1}` (the CP tars and hashes the 8 MiB each second, and the SP
fetches each new snapshot over libp2p, all on the same 2 cores as the job) and once without (the
floor: /workspace is then a plain folder of the container), interleaved. Medians reported.

Run: .venv/bin/python bench/checkpoints.py [--rounds 3] [--count 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp
from common import append_results, header, load_note, median, spawner

from tests.e2e.nodes import cp_and_sp
from tests.procs import DmsProcess, post, wait_for

CMD = (
    "mkdir -p /workspace; dd if=/dev/urandom of=/workspace/data bs=1M count=8 2>/dev/null; "
    "t0=$(cut -d' ' -f1 /proc/uptime); i=0; while [ $i -lt {count} ]; do i=$((i+1)); done; "
    "t1=$(cut -d' ' -f1 /proc/uptime); echo $t0 $t1"
)


async def run_job(sp: DmsProcess, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    quote = post(sp, "/run/request-service", spec)
    out = ""
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "send-status", "job_id": quote["job_id"],
                            "message": {"transaction_type": "fund", "transaction_status": "success"}})  # fmt: skip
        while True:
            frame = await ws.receive_json(timeout=300)
            if frame["action"] == "log-stream-response":
                out += frame.get("stdout", "")
            if frame["action"] in ("job-completed", "job-failed", "error"):
                assert frame["action"] == "job-completed", frame
                break
    t0, t1 = (float(x) for x in out.split())
    return t1 - t0, quote


def job(count: int, checkpoint: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "dms-test/busybox:1", "command": ["sh", "-c", CMD.replace("{count}", str(count))],
        "resources": {"cpu_mhz": 500, "cores": 1.0, "memory_mb": 64}, "max_price": 10**18, "duration_s": 600,
    }  # fmt: skip
    if checkpoint:
        spec["checkpoint"] = {"path": "/workspace", "interval_s": 1}
    return spec


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    note = load_note()
    plain: list[float] = []
    ckpt: list[float] = []
    snaps: list[int] = []
    with spawner() as (make, _):
        _, sp = cp_and_sp(make)
        for _ in range(args.rounds):
            plain.append((await run_job(sp, job(args.count, False)))[0])
            took, quote = await run_job(sp, job(args.count, True))
            ckpt.append(took)
            url = f"/api/v1/run/jobs/{quote['job_id']}/checkpoints"

            def held(url: str = url) -> int:
                return len(sp.get(url)["checkpoints"])

            snaps.append(wait_for(held, 30, "checkpoints on the SP"))
    text = "\n".join([
        header("Checkpoint cost to the running job: 8 MiB /workspace snapshotted every second"),
        "",
        (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        f"{args.rounds} interleaved rounds, counting to {args.count}. {note}",
        "",
        "| run | median counting time | checkpoints per job (median) |",
        "|---|---|---|",
        f"| no checkpoint (floor) | {median(plain):.2f} s | - |",
        f"| checkpoint every 1 s | {median(ckpt):.2f} s | {median(snaps):.0f} |",
        f"| ratio | {median(ckpt) / median(plain):.2f}x | |",
        "",
    ])  # fmt: skip
    print(text)
    if not args.no_write:
        append_results(text)


if __name__ == "__main__":
    asyncio.run(main())
