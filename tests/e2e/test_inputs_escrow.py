"""In escrow mode a job whose input cannot be fetched fails before its container starts, and is refunded."""

from __future__ import annotations

import hashlib

from tests.e2e.test_escrow import REFUNDED, Market, market, pay_and_follow, settled  # noqa: F401  (fixture)
from tests.e2e.test_network_and_jobs import job, removed
from tests.procs import post, wait_for


async def test_a_job_whose_input_fails_is_refunded(market: Market) -> None:  # noqa: F811
    mk = market
    missing = hashlib.sha256(b"no node has this").hexdigest()
    quote = post(mk.sp, "/run/request-service", {**job("echo never"), "inputs": [{"source": missing, "path": "x"}]})
    balance = mk.w3.eth.get_balance(mk.dashboard)
    frames = await pay_and_follow(mk, quote, mk.deposit(quote))
    assert frames[-1]["action"] == "job-failed" and "input 1 (x) could not be fetched" in frames[-1]["message"]
    wait_for(lambda: settled(mk, quote["job_id"], "refund"), 20, "the SP refunds the escrow")
    assert mk.state(quote["job_id"]) == REFUNDED
    assert mk.w3.eth.get_balance(mk.dashboard) > balance - 10**15  # the deposit came back (gas aside)
    await removed(quote["job_id"])
