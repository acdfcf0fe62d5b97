"""A job that floods stdout (issue 13.2 / 13.7): SP and CP peak RSS and store size before and after, the
dashboard's bytes against the job's log budget, and the wall time against the same container run through
the Docker API alone (the floor, which also reads the whole log stream).

Usage: .venv/bin/python bench/log_flood.py [--mb 1000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from common import append_results, header, load_note

from dms.executor.base import ContainerSpec
from dms.executor.docker import container_config
from tests.conftest import PAYOUT
from tests.procs import DmsProcess

IMAGE = "dms-test/busybox:1"
RES = {"cpu_mhz": 500, "cores": 1.0, "memory_mb": 128}


def command(mb: int) -> list[str]:
    return ["sh", "-c", f"echo FIRST LINE; head -c {mb * 1_000_000} /dev/zero | tr '\\0' x; echo; echo LAST LINE"]


def peak_mb(d: DmsProcess) -> float:
    assert d.proc is not None
    status = Path(f"/proc/{d.proc.pid}/status").read_text().splitlines()
    return int(next(x for x in status if x.startswith("VmHWM:")).split()[1]) / 1024


def store_mb(d: DmsProcess) -> float:
    return sum(p.stat().st_size for p in d.data_dir.glob("dms.sqlite3*")) / 2**20


def post(d: DmsProcess, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        d.url + "/api/v1" + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def onboard(d: DmsProcess) -> None:
    total = d.get("/api/v1/onboarding/provisioned")
    body = {"cpu": total["cpu"] // 2, "memory": total["memory"] // 2, "channel": "nunet-test",
            "payment_addr": PAYOUT, "ntx_price": 7}  # fmt: skip
    post(d, "/onboarding/onboard", body)


async def floor(mb: int) -> tuple[float, int]:
    """Seconds and stdout bytes of the same container, its whole log stream read through the Docker API."""
    spec = ContainerSpec(job_id="flood-floor", image=IMAGE, command=tuple(command(mb)), cores=1.0, memory_mb=128,
                         timeout_s=600)  # fmt: skip
    async with aiodocker.Docker() as docker:
        t0 = time.monotonic()
        c = await docker.containers.create(container_config(spec, "bench-floor"), name="bench-flood-floor")
        try:
            await c.start()
            got = 0
            async for chunk in c.log(stdout=True, stderr=True, follow=True):
                got += len(chunk)
            await c.wait()
        finally:
            await c.delete(force=True)
        return time.monotonic() - t0, got


async def through_dms(sp: DmsProcess, mb: int) -> tuple[float, int, int, str]:
    """Seconds, stdout and stderr characters the dashboard got, and its final action."""
    spec = {"image": IMAGE, "command": command(mb), "resources": RES, "max_price": 10**18, "duration_s": 600}
    t0 = time.monotonic()
    job_id = post(sp, "/run/request-service", spec)["job_id"]
    out = err = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        status = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})
        while True:
            f = await ws.receive_json(timeout=600)
            if f["action"] == "log-stream-response":
                out += len(f.get("stdout", ""))
                err += len(f.get("stderr", ""))
            if f["action"] in ("job-completed", "job-failed"):
                return time.monotonic() - t0, out, err, f["action"]


async def run(mb: int) -> str:
    note = load_note()
    with tempfile.TemporaryDirectory(prefix="dms-bench-flood-") as d:
        root = Path(d)
        cp = DmsProcess(root, "cp", p2p={"heartbeat_s": 2}).start(60)
        sp: DmsProcess | None = None
        try:
            onboard(cp)
            me = cp.get("/api/v1/peers/self")
            sp = DmsProcess(root, "sp", p2p={"heartbeat_s": 2, "bootstrap_peers": [me["addrs"][0]]}).start(60)
            onboard(sp)
            deadline = time.monotonic() + 30
            while me["peer_id"] not in {p["peer_id"] for p in sp.get("/api/v1/peers/dht")["peers"]}:
                assert time.monotonic() < deadline, "the SP never saw the CP"
                await asyncio.sleep(0.2)
            before = {n: (peak_mb(x), store_mb(x)) for n, x in (("CP", cp), ("SP", sp))}
            floor_s, floor_bytes = await floor(mb)
            dms_s, out, err, end = await through_dms(sp, mb)
            after = {n: (peak_mb(x), store_mb(x)) for n, x in (("CP", cp), ("SP", sp))}
            budget = 10_240 * 1024  # job.log_budget_kb, default
        finally:
            for x in (sp, cp):
                if x is not None:
                    x.stop()
    rows = "\n".join(
        f"| {n} | {before[n][0]:.0f} MB | {after[n][0]:.0f} MB | {after[n][0] - before[n][0]:+.1f} MB "
        f"| {before[n][1]:.2f} MB | {after[n][1]:.2f} MB |"
        for n in ("CP", "SP")
    )
    return f"""{header(f"Job output flood: {mb} MB of stdout, SP and CP daemons")}

One job writes {mb} MB to stdout (`head -c | tr`, no newlines: the engine splits it into 16 KiB log
messages) between a first and a last line, default settings (job.log_budget_kb 10240, job.log_rate_kb_s
1024). Floor: the same container run through the Docker API alone, its whole log stream read. {note}

| daemon | peak RSS before | peak RSS after | growth | store before | store after |
|---|---|---|---|---|---|
{rows}

| path | wall time | output delivered |
|---|---|---|
| Docker API alone, whole log stream read (floor) | {floor_s:.1f} s | {floor_bytes / 1e6:.0f} MB |
| nunet-dms: request-service to `{end}` | {dms_s:.1f} s | {out} characters of stdout, {err} of stderr (marker) |
| ratio | {dms_s / floor_s:.2f}x | {out / budget:.3f} of the budget ({budget} characters) |
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1000)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    text = asyncio.run(run(args.mb))
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
