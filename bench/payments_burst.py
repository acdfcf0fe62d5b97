"""What escrow costs a burst: 50 paid jobs at once against 50 free ones, each over one SP and two CPs.

Two trios of nunet-dms processes on loopback (p2p.heartbeat_s 2), one with `payment.mode` escrow on anvil
(each transaction mined at once, 1 confirmation), one without; each CP onboarded with room for 25 of the
jobs, as in bench/jobs.py's burst. Per round and trio: 50 quotes, then (paid trio) the 50 deposits made and
mined, as a dashboard does before it reports them; then, timed, the 50 `send-status` at once on one
websocket until the last `job-completed`. The SP verifies each deposit, and the CP again before it admits.
Rounds alternate the two trios; the paid trio's releases are mined before its next round.

The budget escrow must stay within: the verifications' own RPC round trips, 100 `verify_funding` calls
(two per job) made back to back by one client against the same node, timed in the same run.

Usage: .venv/bin/python bench/payments_burst.py [--rounds N] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import append_results, header, load_note, median, p95
from jobs_setup import BURST_JOBS, BURST_RES, FRAME_TIMEOUT_S, FUND, _peer_id, all_free, burst_trio, job_spec
from payments import PAYOUT, Escrow

from dms.payments.verify import EscrowVerifier
from tests.payments.anvil import CHAIN_ID, Anvil, install
from tests.procs import DmsProcess, wait_for


async def burst(sp: DmsProcess, pay: Escrow | None) -> tuple[float, set[str]]:
    """Seconds from the first of 50 send-status to the last job-completed (quotes and deposits before), and
    the jobs' ids."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def quote() -> dict[str, Any]:
            async with s.post(sp.url + "/api/v1/run/request-service", json=job_spec(BURST_RES)) as r:
                body: dict[str, Any] = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"request-service answered {r.status}: {body}")
                return body

        quotes = await asyncio.gather(*(quote() for _ in range(BURST_JOBS)))
        statuses = []
        for q in quotes:
            status = dict(FUND)
            if pay is not None:
                status["tx_hash"] = await asyncio.to_thread(pay.deposit, q)
            statuses.append({"action": "send-status", "job_id": q["job_id"], "message": status})
        ids = {str(q["job_id"]) for q in quotes}
        waiting = set(ids)
        async with s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
            assert (await ws.receive_json(timeout=10))["action"] == "connected"
            t0 = time.perf_counter()
            for frame in statuses:
                await ws.send_json(frame)
            while waiting:
                got = await ws.receive_json(timeout=FRAME_TIMEOUT_S)
                if got["action"] == "job-failed" or got["action"] == "error":
                    raise RuntimeError(f"a job of the burst failed: {got}")
                if got["action"] == "job-completed":
                    waiting.discard(got.get("job_id"))
            return time.perf_counter() - t0, ids


def releases_mined(sp: DmsProcess, job_ids: set[str]) -> bool:
    """Whether each of the jobs' releases is mined (the list holds the newest 500 entries: a round's 100)."""
    rows = sp.get("/api/v1/transactions")
    return job_ids <= {t["job_id"] for t in rows if t["kind"] == "release" and t["state"] == "mined"}


async def verifications(anvil: Anvil, chain: Escrow, sp: DmsProcess, n: int) -> float:
    """Seconds for `n` verify_funding calls back to back (one client, one paid quote)."""
    async with aiohttp.ClientSession() as s, s.post(
        sp.url + "/api/v1/run/request-service", json=job_spec(BURST_RES)
    ) as r:
        q = await r.json()
    tx_hash = await asyncio.to_thread(chain.deposit, q)
    verifier = EscrowVerifier.connect(anvil.url, chain_id=CHAIN_ID, escrow_address=chain.contract.address)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            await verifier.verify_funding(tx_hash, q["job_id"], PAYOUT, q["estimated_price"], arbiter=q["arbiter"])
        return time.perf_counter() - t0
    finally:
        await verifier.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    note = load_note()
    free: list[float] = []
    paid: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dms-bench-payburst-") as d, Anvil(install(), Path(d) / "a.log") as anvil:
        chain = Escrow(anvil)
        root = Path(d)
        procs: list[DmsProcess] = []
        try:
            plain = burst_trio(root, procs, "free-")
            escrowed = burst_trio(root, procs, "paid-", payment=chain.payment)
            chain.fund(escrowed[0])
            runs = [(sp, [_peer_id(c) for c in cps], pay, times)
                    for (sp, *cps), pay, times in ((plain, None, free), (escrowed, chain, paid))]  # fmt: skip
            for r in range(args.rounds):
                paid_ids: set[str] = set()
                for sp, cp_ids, pay, times in runs:
                    wait_for(functools.partial(all_free, sp, cp_ids), 60, "the SP sees both CPs all free")
                    seconds, paid_ids = asyncio.run(burst(sp, pay))
                    times.append(seconds)
                wait_for(functools.partial(releases_mined, escrowed[0], paid_ids), 120, "the round's releases mined")
                print(f"round {r + 1}: free {free[-1]:.2f} s, paid {paid[-1]:.2f} s", flush=True)
            # Last: its quote holds room on a provider for a while (the SP counts an unpaid quote's placement).
            budget = asyncio.run(verifications(anvil, chain, escrowed[0], 2 * BURST_JOBS))
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    p.terminate()
                p.stop()
    extra = median(paid) - median(free)
    text = "\n".join(
        [
            header(f"Escrow in a burst: {BURST_JOBS} paid `busybox true` jobs at once, one SP and two CPs"),
            "",
            (__doc__ or "").split("\n\n")[1].replace("\n", " "),
            "",
            f"{args.rounds} interleaved rounds. {note}",
            "",
            "| path | send-status to the last job-completed (median) | p95 | throughput (median) |",
            "|---|---|---|---|",
            f"| payments off | {median(free):.2f} s | {p95(free):.2f} s | {BURST_JOBS / median(free):.1f} jobs/s |",
            f"| escrow on anvil | {median(paid):.2f} s | {p95(paid):.2f} s | {BURST_JOBS / median(paid):.1f} jobs/s |",
            "",
            f"What escrow adds to the burst: {extra:.2f} s (median against median). The verifications' own RPC "
            f"round trips, {2 * BURST_JOBS} `verify_funding` back to back: {budget:.2f} s. "
            + ("Within it." if extra <= budget else "More than that."),
            "",
        ]
    )
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
