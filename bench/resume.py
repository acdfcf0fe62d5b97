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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from common import append_results, header, load_note, median, spawner

from dms.payments.contract import escrow_job_id
from tests.e2e.nodes import peer_ids, two_providers
from tests.e2e.test_resume import COUNTER, kill_after_checkpoints, resumable
from tests.e2e.test_resume_escrow import PaidNetwork, paid_network_on, send_status
from tests.procs import DmsProcess, post, wait_for

HB = 1.0
SPEC = resumable(COUNTER)
Repay = Callable[[aiohttp.ClientWebSocketResponse, dict[str, Any]], Awaitable[None]]


@dataclass
class Round:
    """Monotonic times of one round's events (0 until seen)."""

    paid: float
    killed: float = 0.0
    first_log: float = 0.0
    resumed: float = 0.0
    """`job-resumed`, or `job-resume-quote` in escrow mode."""
    repaid: float = 0.0
    """Escrow: the new deposit's `send-status`."""
    again: float = 0.0
    """The new run's first log line."""


async def one_round(sp: DmsProcess, victim: DmsProcess, job_id: str, pay: Callable[[], str] | None,
                    repay: Repay | None) -> Round:  # fmt: skip
    """Pays the job (`pay` gives the deposit's transaction, or None without payments), kills its provider
    after 2 checkpoints and follows the frames to the end; `repay` answers a `job-resume-quote`."""
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        tx = await asyncio.to_thread(pay) if pay else None
        r = Round(paid=time.monotonic())
        if tx:
            await send_status(ws, job_id, tx)
        else:
            status = {"transaction_type": "fund", "transaction_status": "success"}
            await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})

        async def kill() -> None:
            await kill_after_checkpoints(sp, job_id, victim)
            r.killed = time.monotonic()

        killer = asyncio.create_task(kill())
        while True:
            frame = await ws.receive_json(timeout=120)
            now, action = time.monotonic(), frame["action"]
            if action == "log-stream-response" and not r.first_log:
                r.first_log = now
            elif action == "log-stream-response" and (r.repaid if repay else r.resumed) and not r.again:
                r.again = now
            if action == ("job-resume-quote" if repay else "job-resumed"):
                r.resumed = now
            if action == "job-resume-quote" and repay:
                await repay(ws, frame["detail"]["quote"])
                r.repaid = time.monotonic()
            if action in ("job-completed", "job-failed", "error"):
                assert action == "job-completed" and r.again, frame
                break
        await killer
    await asyncio.to_thread(victim.start)
    return r


async def paid_round(n: PaidNetwork) -> Round:
    """Escrow: one round where the dashboard deposits for the job, then for its resumed run."""
    quote = post(n.sp, "/run/request-service", SPEC)
    job_id = quote["job_id"]
    victim = n.cps[[i["peer_id"] for i in n.ids].index(quote["compute_provider"]["peer_id"])]
    first = (escrow_job_id(job_id), quote["compute_provider"]["payment_addr"], quote["arbiter"],
             quote["estimated_price"])  # fmt: skip

    async def repay(ws: aiohttp.ClientWebSocketResponse, q: dict[str, Any]) -> None:
        key = bytes.fromhex(q["escrow_job_id"][2:])
        args = (key, q["compute_provider"]["payment_addr"], q["arbiter"], q["estimated_price"])
        await send_status(ws, job_id, await asyncio.to_thread(n.pay.deposit, *args))

    return await one_round(n.sp, victim, job_id, lambda: n.pay.deposit(*first), repay)


def sees_both(sp: DmsProcess, ids: list[dict[str, Any]]) -> None:
    want = {i["peer_id"] for i in ids}
    wait_for(lambda: want <= peer_ids(sp), 90, "the SP sees both")


async def unpaid_rounds(make: Callable[..., DmsProcess], rounds: int) -> list[Round]:
    providers, ids, sp = two_providers(make)
    cps = {i["peer_id"]: cp for i, cp in zip(ids, providers, strict=True)}
    done = []
    for _ in range(rounds):
        sees_both(sp, ids)
        quote = post(sp, "/run/request-service", SPEC)
        done.append(await one_round(sp, cps[quote["compute_provider"]["peer_id"]], quote["job_id"], None, None))
    return done


def report(rs: list[Round], escrow: bool, note: str) -> str:
    floor = median([r.first_log - r.paid for r in rs])
    resumed = median([r.resumed - r.killed for r in rs])
    if escrow:
        run = median([r.again - r.repaid for r in rs])
        title = "Resume after loss in escrow mode: the new run's deposit to the job running again elsewhere"
        rows = [
            ("floor: a paid job's send-status to its first log line", f"{floor:.2f} s"),
            (f"kill to `job-resume-quote` (3 heartbeats = {3 * HB:g} s of it)", f"{resumed:.2f} s"),
            ("the new deposit's send-status to the new run's first log line", f"{run:.2f} s"),
            ("as a ratio to the floor", f"{run / floor:.2f}x"),
        ]
        how, goal = f"{len(rs)} rounds, anvil on loopback (1 confirmation). {note}", ""
    else:
        run = median([r.again - r.killed for r in rs])
        title = "Resume after loss: provider SIGKILLed to the job running again elsewhere (payment mode none)"
        rows = [
            ("floor: a job's send-status to its first log line", f"{floor:.2f} s"),
            (f"kill to `job-resumed` (3 heartbeats = {3 * HB:g} s of it)", f"{resumed:.2f} s"),
            ("kill to the new run's first log line", f"{run:.2f} s"),
            ("beyond 3 heartbeats, as a ratio to the floor", f"{(run - 3 * HB) / floor:.2f}x"),
        ]
        how, goal = f"{len(rs)} rounds. {note}", f"Goal: running again within 3 heartbeats + 1 s ({3 * HB + 1:g} s).\n"
    intro = (__doc__ or "").split("\n\n")[2 if escrow else 1].replace("\n", " ")
    table = ["| step | median |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join([header(title), "", intro, how, "", *table, "", goal])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--escrow", action="store_true", help="escrow mode on anvil (timed from the new deposit)")
    args = ap.parse_args()
    note = load_note()
    with spawner() as (make, root):
        if args.escrow:
            with paid_network_on(make, root / "anvil.log") as n:
                rounds = []
                for _ in range(args.rounds):
                    sees_both(n.sp, n.ids)
                    rounds.append(await paid_round(n))
        else:
            rounds = await unpaid_rounds(make, args.rounds)
    text = report(rounds, args.escrow, note)
    print(text)
    if not args.no_write:
        append_results(text)


if __name__ == "__main__":
    asyncio.run(main())
