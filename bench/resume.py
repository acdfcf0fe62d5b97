"""Time from a provider's loss to the job running again on another provider (payment mode none, and escrow).

Three nunet-dms processes on loopback (SP and two CPs, p2p.heartbeat_s 1). Each round: a counter job with
`checkpoint: {interval_s: 1}` and `resume: on-failure` starts on one CP; once the SP holds 2 checkpoints,
that CP is SIGKILLed; times are taken from the kill to the `job-resumed` frame and to the first log line
of the new run (its container runs). The killed CP is restarted (it reconciles its orphan) before the next
round. Floor, in the same rounds: a fresh job's time from `send-status` to its first log line (dispatch
and container start with nothing lost). Goal (issue 15): running again within 3 heartbeats + 1 s.

With `--escrow`: the same on anvil with both providers and the SP in escrow mode. The resumed run waits
for its own deposit, so its time is counted from the new deposit: from the `send-status` that reports it
(the dashboard deposits as soon as `job-resume-quote` arrives) to the new run's first log line. Floor, in
the same rounds: a fresh paid job's `send-status` to its first log line (both nodes verify the deposit
on-chain before it runs).

Run: .venv/bin/python bench/resume.py [--rounds 3] [--escrow]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import append_results, header, load_note, median

from dms.payments.contract import escrow_job_id
from tests.e2e.test_daemon_process import onboard
from tests.e2e.test_resume_escrow import PaidNetwork, paid_network_on, send_status
from tests.procs import DmsProcess, post, wait_for

HB = 1.0
COUNTER = (
    "touch /workspace/log; i=$(tail -n1 /workspace/log); i=${i:-0}; echo start $i; "
    "while [ $i -lt 60 ]; do i=$((i+1)); echo $i >> /workspace/log; sleep 0.1; done; echo counted"
)
SPEC: dict[str, Any] = {
    "image": "dms-test/busybox:1", "command": ["sh", "-c", COUNTER],
    "resources": {"cpu_mhz": 300, "cores": 0.5, "memory_mb": 32}, "max_price": 10**18, "duration_s": 120,
    "checkpoint": {"path": "/workspace", "interval_s": 1}, "resume": "on-failure",
}  # fmt: skip


async def one_round(sp: DmsProcess, cps: dict[str, DmsProcess]) -> tuple[float, float, float]:
    """(send-status → first log, kill → job-resumed, kill → first log of the new run)."""
    quote = post(sp, "/run/request-service", SPEC)
    job_id = quote["job_id"]
    victim = cps[quote["compute_provider"]["peer_id"]]
    t_pay = t_kill = 0.0
    first_log = resumed = again = 0.0
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        t_pay = time.monotonic()
        status = {"transaction_type": "fund", "transaction_status": "success"}
        await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})

        async def kill() -> None:
            nonlocal t_kill
            path = f"/api/v1/run/jobs/{job_id}/checkpoints"
            await asyncio.to_thread(wait_for, lambda: len(sp.get(path)["checkpoints"]) >= 2, 30, "checkpoints")
            await asyncio.to_thread(victim.kill9)
            t_kill = time.monotonic()

        killer = asyncio.create_task(kill())
        while True:
            frame = await ws.receive_json(timeout=120)
            now = time.monotonic()
            if frame["action"] == "log-stream-response" and not first_log:
                first_log = now - t_pay
            if frame["action"] == "job-resumed":
                resumed = now - t_kill
            if frame["action"] == "log-stream-response" and resumed and not again:
                again = now - t_kill
            if frame["action"] in ("job-completed", "job-failed", "error"):
                assert frame["action"] == "job-completed" and resumed, frame
                break
        await killer
    await asyncio.to_thread(victim.start)
    return first_log, resumed, again


async def paid_round(n: PaidNetwork) -> tuple[float, float, float]:
    """Escrow: (send-status → first log, kill → job-resume-quote, new deposit's send-status → first log)."""
    sp, pay = n.sp, n.pay
    quote = post(sp, "/run/request-service", SPEC)
    job_id = quote["job_id"]
    victim = n.cps[[i["peer_id"] for i in n.ids].index(quote["compute_provider"]["peer_id"])]
    t_kill = t_paid = first_log = asked = again = 0.0
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        addr = quote["compute_provider"]["payment_addr"]
        tx = await asyncio.to_thread(
            pay.deposit, escrow_job_id(job_id), addr, quote["arbiter"], quote["estimated_price"]
        )
        t_pay = time.monotonic()
        await send_status(ws, job_id, tx)

        async def kill() -> None:
            nonlocal t_kill
            path = f"/api/v1/run/jobs/{job_id}/checkpoints"
            await asyncio.to_thread(wait_for, lambda: len(sp.get(path)["checkpoints"]) >= 2, 30, "checkpoints")
            await asyncio.to_thread(victim.kill9)
            t_kill = time.monotonic()

        killer = asyncio.create_task(kill())
        while True:
            frame = await ws.receive_json(timeout=120)
            now = time.monotonic()
            if frame["action"] == "log-stream-response" and not first_log:
                first_log = now - t_pay
            if frame["action"] == "job-resume-quote":
                asked = now - t_kill
                q = frame["detail"]["quote"]
                key = bytes.fromhex(q["escrow_job_id"][2:])
                args = (key, q["compute_provider"]["payment_addr"], q["arbiter"], q["estimated_price"])
                tx = await asyncio.to_thread(pay.deposit, *args)
                t_paid = time.monotonic()
                await send_status(ws, job_id, tx)
            if frame["action"] == "log-stream-response" and t_paid and not again:
                again = now - t_paid
            if frame["action"] in ("job-completed", "job-failed", "error"):
                assert frame["action"] == "job-completed" and again, frame
                break
        await killer
    await asyncio.to_thread(victim.start)
    return first_log, asked, again


async def escrow_main(rounds: int, write: bool) -> None:
    note = load_note()
    floor: list[float] = []
    to_quote: list[float] = []
    to_run: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made: list[DmsProcess] = []

        def make(name: str, **kw: Any) -> DmsProcess:
            made.append(DmsProcess(root, name, **kw))
            return made[-1]

        try:
            with paid_network_on(make, root / "anvil.log") as n:
                for _ in range(rounds):
                    wait_for(lambda: {i["peer_id"] for i in n.ids} <= {p["peer_id"] for p in n.sp.get(
                        "/api/v1/peers/dht/dump")}, 90, "the SP sees both providers")  # fmt: skip
                    a, b, c = await paid_round(n)
                    floor.append(a)
                    to_quote.append(b)
                    to_run.append(c)
        finally:
            for p in made:
                p.stop()
    text = "\n".join([
        header("Resume after loss in escrow mode: the new run's deposit to the job running again elsewhere"),
        "",
        (__doc__ or "").split("\n\n")[2].replace("\n", " "),
        f"{rounds} rounds, anvil on loopback (1 confirmation). {note}",
        "",
        "| step | median |",
        "|---|---|",
        f"| floor: a paid job's send-status to its first log line | {median(floor):.2f} s |",
        f"| kill to `job-resume-quote` (3 heartbeats = {3 * HB:g} s of it) | {median(to_quote):.2f} s |",
        f"| the new deposit's send-status to the new run's first log line | {median(to_run):.2f} s |",
        f"| as a ratio to the floor | {median(to_run) / median(floor):.2f}x |",
        "",
    ])  # fmt: skip
    print(text)
    if write:
        append_results(text)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--escrow", action="store_true", help="escrow mode on anvil (timed from the new deposit)")
    args = ap.parse_args()
    if args.escrow:
        await escrow_main(args.rounds, not args.no_write)
        return
    note = load_note()
    floor: list[float] = []
    to_frame: list[float] = []
    to_run: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        procs = [DmsProcess(root, f"cp{i}").start() for i in (1, 2)]
        try:
            for cp in procs:
                onboard(cp, 0.4)
            ids = [cp.get("/api/v1/peers/self") for cp in procs]
            cps = {i["peer_id"]: cp for i, cp in zip(ids, procs, strict=True)}
            sp = DmsProcess(root, "sp", p2p={"bootstrap_peers": [i["addrs"][0] for i in ids]}).start()
            procs.append(sp)
            onboard(sp, 0.2)
            for _ in range(args.rounds):
                wait_for(lambda: set(cps) <= {p["peer_id"] for p in sp.get("/api/v1/peers/dht/dump")}, 30,
                         "the SP sees both providers")  # fmt: skip
                a, b, c = await one_round(sp, cps)
                floor.append(a)
                to_frame.append(b)
                to_run.append(c)
        finally:
            for p in procs:
                p.stop()
    text = "\n".join([
        header("Resume after loss: provider SIGKILLed to the job running again elsewhere (payment mode none)"),
        "",
        (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        f"{args.rounds} rounds. {note}",
        "",
        "| step | median |",
        "|---|---|",
        f"| floor: a job's send-status to its first log line | {median(floor):.2f} s |",
        f"| kill to `job-resumed` (3 heartbeats = {3 * HB:g} s of it) | {median(to_frame):.2f} s |",
        f"| kill to the new run's first log line | {median(to_run):.2f} s |",
        f"| beyond 3 heartbeats, as a ratio to the floor | {(median(to_run) - 3 * HB) / median(floor):.2f}x |",
        "",
        f"Goal: running again within 3 heartbeats + 1 s ({3 * HB + 1:g} s).",
        "",
    ])  # fmt: skip
    print(text)
    if not args.no_write:
        append_results(text)


if __name__ == "__main__":
    asyncio.run(main())
