"""Paid jobs end to end: anvil (a real JSON-RPC chain), two daemons in escrow mode, a dashboard that pays.

The dashboard deposits from one of anvil's dev accounts; the SP's own wallet is the arbiter (funded for
gas); the CP's payout address is fresh, so its balance moves by payouts only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.types import TxReceipt, Wei

from dms.payments.contract import escrow_job_id, load_artifact
from tests.e2e.test_network_and_jobs import job, known, post_error, removed
from tests.payments.anvil import CHAIN_ID, Anvil, AnvilError, install
from tests.procs import DmsProcess, post, run_cli, wait_for

REFUNDED, RELEASED = 3, 2


@dataclass
class Market:
    anvil: Anvil
    w3: Web3
    escrow: Contract
    dashboard: ChecksumAddress
    cp: DmsProcess
    sp: DmsProcess
    payout: ChecksumAddress

    def wait(self, tx_hash: HexBytes) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
        assert receipt["status"] == 1
        return receipt

    def deposit(self, quote: dict[str, Any], value: int | None = None) -> str:
        fn = self.escrow.functions.deposit(
            escrow_job_id(quote["job_id"]), quote["compute_provider"]["payment_addr"], quote["arbiter"]
        )
        receipt = self.wait(fn.transact({"from": self.dashboard, "value": Wei(value or quote["estimated_price"])}))
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def state(self, job_id: str) -> int:
        return int(self.escrow.functions.state(escrow_job_id(job_id)).call())


@pytest.fixture
def market(dms_process: Callable[..., DmsProcess], tmp_path: Path) -> Iterator[Market]:
    try:
        anvil = Anvil(install(), tmp_path / "anvil.log")
    except AnvilError as e:
        pytest.fail(f"anvil is required for this test: {e}")
    with anvil:
        w3 = Web3(HTTPProvider(anvil.url))
        deployer, dashboard = list(w3.eth.accounts)[:2]
        art = load_artifact()
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.contract(abi=art.abi, bytecode=art.bytecode).constructor(3600).transact({"from": deployer})
        )
        address = receipt["contractAddress"]
        assert address is not None, "a contract creation's receipt names the new contract"
        escrow = w3.eth.contract(address=address, abi=art.abi)
        payment = {
            "mode": "escrow", "rpc_url": anvil.url, "chain_id": CHAIN_ID, "escrow_address": escrow.address,
            "required_confirmations": 1, "timeout_s": 10,
        }  # fmt: skip
        cp = dms_process("cp", payment=payment).start()
        payout = Account.create().address
        m = cp.get("/api/v1/onboarding/provisioned")
        post(cp, "/onboarding/onboard", {"memory": m["memory"] // 2, "cpu": m["cpu"] // 2, "channel": "nunet-test",
                                         "payment_addr": payout, "ntx_price": 10**12})  # fmt: skip
        me = cp.get("/api/v1/peers/self")
        sp = dms_process("sp", payment=payment, p2p={"bootstrap_peers": [me["addrs"][0]]}).start()
        post(sp, "/onboarding/onboard", {"memory": m["memory"] // 5, "cpu": m["cpu"] // 5, "channel": "nunet-test",
                                         "payment_addr": payout})  # fmt: skip
        arbiter = sp.get("/api/v1/wallet")["address"]
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": deployer, "to": arbiter, "value": Wei(10**18)})
        )
        wait_for(lambda: me["peer_id"] in known(sp), 10, "the SP sees the CP")
        yield Market(anvil, w3, escrow, dashboard, cp, sp, payout)


async def pay_and_follow(mk: Market, quote: dict[str, Any], tx_hash: str) -> list[dict[str, Any]]:
    frames = []
    async with aiohttp.ClientSession() as s, s.ws_connect(mk.sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({
            "action": "send-status", "job_id": quote["job_id"],
            "message": {"transaction_type": "fund", "transaction_status": "success", "tx_hash": tx_hash},
        })  # fmt: skip
        while True:
            frame = await ws.receive_json(timeout=60)
            frames.append(frame)
            if frame["action"] in ("job-completed", "job-failed", "error"):
                return frames


def settlement(mk: Market, job_id: str, kind: str) -> dict[str, Any] | None:
    rows = mk.sp.get("/api/v1/transactions")
    return next((t for t in rows if t["job_id"] == job_id and t["kind"] == kind), None)


def settled(mk: Market, job_id: str, kind: str) -> bool:
    row = settlement(mk, job_id, kind)
    return row is not None and row["state"] == "mined"


async def test_paid_job_releases_exactly_the_price(market: Market) -> None:
    mk = market
    quote = post(mk.sp, "/run/request-service", job("echo paid work"))
    assert quote["escrow_address"] == mk.escrow.address and quote["chain_id"] == CHAIN_ID
    assert quote["escrow_job_id"] == "0x" + escrow_job_id(quote["job_id"]).hex()
    price = quote["estimated_price"]
    assert price == 10**12 * 500 * 60 // 1000  # ntx_price x cpu_mhz / 1000 x duration_s
    frames = await pay_and_follow(mk, quote, mk.deposit(quote))
    assert frames[-1]["action"] == "job-completed", frames[-1]
    wait_for(lambda: settled(mk, quote["job_id"], "release"), 20, "the SP releases the escrow")
    assert mk.w3.eth.get_balance(mk.payout) == price
    assert mk.state(quote["job_id"]) == RELEASED


async def test_rejected_payments_say_why_and_start_nothing(market: Market) -> None:
    mk = market
    quote = post(mk.sp, "/run/request-service", job("echo never"))
    frames = await pay_and_follow(mk, quote, mk.deposit(quote, value=quote["estimated_price"] - 1))
    assert frames[-1]["action"] == "job-failed" and frames[-1]["message"] == "payment rejected: underpaid"
    await removed(quote["job_id"])

    paid = post(mk.sp, "/run/request-service", job("echo once"))
    tx = mk.deposit(paid)
    assert (await pay_and_follow(mk, paid, tx))[-1]["action"] == "job-completed"
    again = post(mk.sp, "/run/request-service", job("echo twice"))
    frames = await pay_and_follow(mk, again, tx)  # the same deposit for another job: it names the first one
    assert frames[-1]["action"] == "job-failed" and frames[-1]["message"] == "payment rejected: wrong job"

    victim = post(mk.sp, "/run/request-service", job("echo victim job"))
    victim_tx = mk.deposit(victim)
    thief = post(mk.sp, "/run/request-service", job("echo never"))
    frames = await pay_and_follow(mk, thief, victim_tx)  # someone else's deposit, sent first
    assert frames[-1]["action"] == "job-failed" and frames[-1]["message"] == "payment rejected: wrong job"
    frames = await pay_and_follow(mk, victim, victim_tx)
    assert frames[-1]["action"] == "job-completed", frames[-1]  # the deposit was never marked used

    bogus = post(mk.sp, "/run/request-service", job("echo never"))
    frames = await pay_and_follow(mk, bogus, "0x" + "ab" * 32)
    assert frames[-1]["action"] == "job-failed" and frames[-1]["message"] == "payment rejected: payment not confirmed"
    await removed(bogus["job_id"])


async def lax_deploy(mk: Market, tmp_path: Path, quote: dict[str, Any], spec: dict[str, Any], tx: str) -> Any:
    """Offer a job to the CP as an SP that skips its own checks (a peer speaking the protocol directly)."""
    from dms.jobs.protocol import PROTOCOL, Deploy, Payment, decode_to_requester, encode
    from dms.jobs.spec import JobSpec
    from dms.network import NetworkSettings, P2PNode

    me = mk.cp.get("/api/v1/peers/self")
    node = P2PNode(
        NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",), bootstrap_peers=(me["addrs"][0],), heartbeat_s=1),
        identity_path=tmp_path / "lax-sp.key",
        version="lax",
    )
    await node.start()
    try:
        stream = await node.open_stream(me["peer_id"], PROTOCOL)
        payment = Payment(price=quote["estimated_price"], tx_hash=tx, arbiter=quote["arbiter"])
        deploy = Deploy(type="deploy", job_id=quote["job_id"], spec=JobSpec.model_validate(spec), payment=payment)
        await stream.send(encode(deploy))
        answer = decode_to_requester(await stream.receive(30))
        await stream.close()
    finally:
        await node.stop()
    return answer


async def test_the_cp_checks_for_itself(market: Market, tmp_path: Path) -> None:
    """An SP that skips its own check cannot get underpaid work run."""
    mk = market
    quote = post(mk.sp, "/run/request-service", job("echo should not run"))
    tx = mk.deposit(quote, value=quote["estimated_price"] // 2)
    answer = await lax_deploy(mk, tmp_path, quote, job("echo should not run"), tx)
    assert answer.type == "rejected" and answer.reason == "payment rejected: underpaid", answer
    await removed(quote["job_id"])


async def test_a_deposit_refundable_before_the_job_ends_is_refused(market: Market, tmp_path: Path) -> None:
    """The escrow's refund delay is 3600 s: the SP quotes no job it cannot cover, the CP runs none."""
    mk = market
    long = {**job("echo should not run"), "duration_s": 3500}
    status, error = post_error(mk.sp, "/run/request-service", long)
    assert status == 409 and error["code"] == "duration_too_long", error
    assert "too long for this escrow" in error["message"] and "at most 3300 s" in error["message"]
    quote = post(mk.sp, "/run/request-service", job("echo should not run"))
    tx = mk.deposit(quote, value=10**12 * 500 * 3500 // 1000)  # enough for the long job, paid now
    answer = await lax_deploy(mk, tmp_path, quote, long, tx)
    assert answer.type == "rejected" and answer.reason == "payment rejected: deadline too soon", answer
    await removed(quote["job_id"])


async def test_a_job_refused_by_the_cp_is_refunded(market: Market) -> None:
    mk = market
    quote = post(mk.sp, "/run/request-service", {**job("true"), "image": "dms-test/absent:1"})
    balance = mk.w3.eth.get_balance(mk.dashboard)
    frames = await pay_and_follow(mk, quote, mk.deposit(quote))
    assert frames[-1]["action"] == "job-failed" and "dms-test/absent:1" in frames[-1]["message"]
    wait_for(lambda: settled(mk, quote["job_id"], "refund"), 20, "the SP refunds the escrow")
    assert mk.state(quote["job_id"]) == REFUNDED
    assert mk.w3.eth.get_balance(mk.dashboard) > balance - 10**15  # the deposit came back (gas aside)
    await removed(quote["job_id"])


def test_nunet_run_pays_and_the_transactions_are_listed(market: Market) -> None:
    mk = market
    payer = Account.create()
    mk.wait(mk.w3.eth.send_transaction({"from": mk.dashboard, "to": payer.address, "value": Wei(10**18)}))
    unpaid = run_cli("run", "--memory", "64", "--", "echo", "hi", dms=mk.sp.url)
    assert unpaid.returncode == 1 and "--pay-key" in unpaid.stderr
    pay = ["--pay-key", payer.key.hex(), "--rpc-url", mk.anvil.url]
    out = run_cli("run", "--memory", "64", *pay, "--", "echo", "paid by the cli", dms=mk.sp.url)
    assert out.returncode == 0, out.stderr
    assert "paid: deposit 0x" in out.stdout and "paid by the cli" in out.stdout
    job_id = mk.sp.get("/api/v1/run/jobs")["jobs"][0]["job_id"]
    wait_for(lambda: settled(mk, job_id, "release"), 20, "the SP releases the escrow")
    listing = run_cli("transactions", dms=mk.sp.url)
    assert listing.returncode == 0 and "release" in listing.stdout and "verified" in listing.stdout
    wallet = run_cli("wallet", "show", dms=mk.sp.url)
    assert mk.sp.get("/api/v1/wallet")["address"] in wallet.stdout


async def test_settlement_is_retried_until_mined_across_a_crash(market: Market) -> None:
    """The SP's wallet has no gas when the job ends: the dashboard still gets job-completed at once; the
    release stays pending, is retried, survives a SIGKILL of the SP and is mined once the wallet is funded."""
    mk = market
    arbiter = mk.sp.get("/api/v1/wallet")["address"]
    quote = post(mk.sp, "/run/request-service", job("echo paid work"))
    tx = mk.deposit(quote)
    mk.w3.provider.make_request("anvil_setBalance", [arbiter, "0x0"])  # type: ignore[arg-type]
    frames = await pay_and_follow(mk, quote, tx)
    assert frames[-1]["action"] == "job-completed", frames[-1]  # the final frame does not wait for the chain

    def retried() -> bool:
        row = settlement(mk, quote["job_id"], "release")
        return row is not None and row["state"] == "pending" and "attempt 2" in (row["error"] or "")

    wait_for(retried, 20, "the release is tried again after a failure")
    assert "no gas" in settlement(mk, quote["job_id"], "release")["error"]  # type: ignore[index]
    mk.sp.kill9()
    mk.w3.provider.make_request("anvil_setBalance", [arbiter, hex(10**18)])  # type: ignore[arg-type]
    mk.sp.start()
    wait_for(lambda: settled(mk, quote["job_id"], "release"), 30, "the release is mined after the restart")
    assert mk.state(quote["job_id"]) == RELEASED
    assert mk.w3.eth.get_balance(mk.payout) == quote["estimated_price"]
