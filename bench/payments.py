"""What escrow payments cost, on anvil mining each transaction at once, with 1 required confirmation.

(a) one `verify_funding` call (5 JSON-RPC calls) beside one bare `eth_chainId` round trip to the same node;
(b) the job flow from `send-status` to `job-completed` for `true`, with payments off and on (deposit made
    before `send-status`, as a dashboard does), two daemon pairs in the same run; the difference is what
    verifying at the SP and again at the CP adds. Settlement happens after `job-completed` and is not in it.

Usage: .venv/bin/python bench/payments.py [--runs N] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import append_results, header, load_note, median, p95
from web3 import HTTPProvider, Web3
from web3.types import Wei

from dms.payments.contract import escrow_job_id, load_artifact
from dms.payments.verify import EscrowVerifier
from tests.payments.anvil import CHAIN_ID, Anvil, install
from tests.procs import DmsProcess, post

PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
JOB: dict[str, Any] = {
    "image": "dms-test/busybox:1",
    "command": ["true"],
    "resources": {"cpu_mhz": 100, "cores": 0.2, "memory_mb": 32},
    "max_price": 10**18,
    "duration_s": 60,
}


def pair(root: Path, name: str, payment: dict[str, Any] | None) -> tuple[DmsProcess, DmsProcess]:
    extra = {"payment": payment} if payment else {}
    cp = DmsProcess(root, f"{name}-cp", None, **extra).start()
    m = cp.get("/api/v1/onboarding/provisioned")
    onboard = {"memory": m["memory"] // 4, "cpu": m["cpu"] // 4, "channel": "nunet-test", "payment_addr": PAYOUT}
    post(cp, "/onboarding/onboard", {**onboard, "ntx_price": 10**9})
    me = cp.get("/api/v1/peers/self")
    sp = DmsProcess(root, f"{name}-sp", None, p2p={"bootstrap_peers": [me["addrs"][0]]}, **extra).start()
    post(sp, "/onboarding/onboard", onboard)
    deadline = time.monotonic() + 20
    while me["peer_id"] not in {p["peer_id"] for p in sp.get("/api/v1/peers/dht/dump")}:
        if time.monotonic() > deadline:
            raise RuntimeError("the SP did not see the CP")
        time.sleep(0.1)
    return cp, sp


async def job_after_payment(sp: DmsProcess, pay: Any) -> float:
    """Seconds from send-status to job-completed; `pay(quote)` returns the tx hash (or None)."""
    quote = post(sp, "/run/request-service", JOB)
    tx = pay(quote)
    status: dict[str, Any] = {"transaction_type": "fund", "transaction_status": "success"}
    if tx:
        status["tx_hash"] = tx
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        t0 = time.perf_counter()
        await ws.send_json({"action": "send-status", "job_id": quote["job_id"], "message": status})
        while (frame := await ws.receive_json(timeout=60))["action"] not in ("job-completed", "job-failed"):
            pass
        elapsed = time.perf_counter() - t0
    if frame["action"] != "job-completed":
        raise RuntimeError(f"job failed: {frame}")
    return elapsed


class Escrow:
    """The escrow contract deployed on anvil, and a dashboard's account that pays deposits."""

    def __init__(self, anvil: Anvil) -> None:
        self.w3 = Web3(HTTPProvider(anvil.url))
        self.deployer, self.dashboard = list(self.w3.eth.accounts)[:2]
        art = load_artifact()
        contract = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        tx = contract.constructor(3600).transact({"from": self.deployer})
        address = self.w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        assert address is not None, "a contract creation's receipt names the new contract"
        self.contract = self.w3.eth.contract(address=address, abi=art.abi)
        self.payment = {"mode": "escrow", "rpc_url": anvil.url, "chain_id": CHAIN_ID, "escrow_address": address}

    def deposit(self, quote: dict[str, Any]) -> str:
        """Pay the quote's deposit, as a dashboard does; its transaction hash, once mined."""
        fn = self.contract.functions.deposit(
            escrow_job_id(quote["job_id"]), quote["compute_provider"]["payment_addr"], quote["arbiter"]
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(
            fn.transact({"from": self.dashboard, "value": Wei(quote["estimated_price"])})
        )
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def fund(self, sp: DmsProcess) -> None:
        """Gas for the SP's wallet, which sends the releases and refunds."""
        arbiter = sp.get("/api/v1/wallet")["address"]
        self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_transaction({"from": self.deployer, "to": arbiter, "value": Wei(10**18)})
        )


async def main_async(runs: int, write: bool) -> None:
    note = load_note()
    with tempfile.TemporaryDirectory() as d, Anvil(install(), Path(d) / "anvil.log") as anvil:
        chain = Escrow(anvil)
        escrow, deposit = chain.contract, chain.deposit
        root = Path(d)
        free_cp, free_sp = pair(root, "free", None)
        paid_cp, paid_sp = pair(root, "paid", chain.payment)
        chain.fund(paid_sp)
        try:
            # (a) one verification beside one bare RPC round trip
            quote = post(paid_sp, "/run/request-service", JOB)
            tx_hash = deposit(quote)
            verifier = EscrowVerifier.connect(anvil.url, chain_id=CHAIN_ID, escrow_address=escrow.address)
            bare: list[float] = []
            verify: list[float] = []
            for _ in range(30):
                t0 = time.perf_counter()
                await verifier.w3.eth.chain_id
                bare.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await verifier.verify_funding(
                    tx_hash, quote["job_id"], PAYOUT, quote["estimated_price"], arbiter=quote["arbiter"]
                )
                verify.append((time.perf_counter() - t0) * 1000)
            await verifier.close()
            # (b) the job flow with and without payments, interleaved
            free: list[float] = []
            paid: list[float] = []
            for i in range(runs + 2):
                f = await job_after_payment(free_sp, lambda q: None)
                p = await job_after_payment(paid_sp, deposit)
                if i >= 2:  # warm-ups
                    free.append(f * 1000)
                    paid.append(p * 1000)
        finally:
            for proc in (free_sp, free_cp, paid_sp, paid_cp):
                proc.stop()
    text = "\n".join(
        [
            header("Escrow payments on anvil"),
            "",
            f"anvil mines each transaction at once; 1 required confirmation. {note}",
            "",
            "| measure | median | p95 | floor (median) | ratio |",
            "|---|---|---|---|---|",
            f"| one verify_funding (5 JSON-RPC calls) vs one eth_chainId | {median(verify):.1f} ms"
            f" | {p95(verify):.1f} ms | {median(bare):.1f} ms | {median(verify) / median(bare):.1f}x |",
            f"| send-status to job-completed, `true`, payments on vs off ({runs} runs each) | {median(paid):.0f} ms"
            f" | {p95(paid):.0f} ms | {median(free):.0f} ms | {median(paid) / median(free):.2f}x |",
            "",
            f"What payment adds to the job flow: {median(paid) - median(free):.0f} ms median (the SP verifies, then"
            " the CP verifies again before admitting). Release and refund are sent after `job-completed`.",
            "",
        ]
    )
    print(text)
    if write:
        append_results(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    asyncio.run(main_async(args.runs, args.write))


if __name__ == "__main__":
    main()
