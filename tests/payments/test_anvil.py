"""The real path against a real node: anvil over HTTP, AsyncHTTPProvider in the verifier and the settler.

These tests fail (never skip) when anvil cannot be installed or started.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.types import TxReceipt, Wei

from dms.payments.contract import escrow_job_id, load_artifact
from dms.payments.errors import PaymentRejected, SettlementError
from dms.payments.settle import Settler
from dms.payments.verify import EscrowVerifier
from dms.payments.wallet import Wallet
from tests.payments.anvil import CHAIN_ID, Anvil, AnvilError, install

PRICE = 10**16


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[Anvil]:
    try:
        node = Anvil(install(), tmp_path / "anvil.log")
    except AnvilError as e:
        pytest.fail(f"anvil is required for this test: {e}")
    with node:
        yield node


class Demo:
    """The demo's cast: a dashboard paying from a dev account, the SP's wallet as arbiter, a fresh provider."""

    def __init__(self, anvil: Anvil, tmp_path: Path) -> None:
        self.anvil = anvil
        self.w3 = Web3(HTTPProvider(anvil.url))
        self.deployer, self.dashboard = list(self.w3.eth.accounts)[:2]
        self.provider = Account.create().address  # sends nothing: its balance moves by payouts only
        self.sp = Wallet.load_or_create(tmp_path / "sp")
        self.send(self.deployer, self.sp.address, 10**18)  # gas money for release and refund
        art = load_artifact()
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        receipt = self.wait(factory.constructor(3600).transact({"from": self.deployer}))
        address = receipt["contractAddress"]
        assert address is not None, "a contract creation's receipt names the new contract"
        self.escrow: Contract = self.w3.eth.contract(address=address, abi=art.abi)

    def wait(self, tx_hash: HexBytes) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
        assert receipt["status"] == 1
        return receipt

    def send(self, sender: str, to: str, value: int) -> None:
        self.wait(self.w3.eth.send_transaction({"from": sender, "to": to, "value": Wei(value)}))

    def deposit(self, job: str, arbiter: str | None = None, value: int = PRICE) -> str:
        fn = self.escrow.functions.deposit(escrow_job_id(job), self.provider, arbiter or self.sp.address)
        receipt = self.wait(fn.transact({"from": self.dashboard, "value": Wei(value)}))
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def verifier(self, confirmations: int = 1) -> EscrowVerifier:
        return EscrowVerifier.connect(
            self.anvil.url,
            chain_id=CHAIN_ID,
            escrow_address=self.escrow.address,
            required_confirmations=confirmations,
            poll_interval_s=0.05,
        )

    def settler(self, wallet: Wallet) -> Settler:
        return Settler.connect(self.anvil.url, wallet.account(), chain_id=CHAIN_ID, escrow_address=self.escrow.address)


async def test_pay_verify_release_on_anvil(anvil: Anvil, tmp_path: Path) -> None:
    demo = Demo(anvil, tmp_path)
    tx = demo.deposit("anvil-job-1")
    verifier, settler = demo.verifier(), demo.settler(demo.sp)
    try:
        started = time.perf_counter()
        proof = await verifier.verify_funding(tx, "anvil-job-1", demo.provider, PRICE, arbiter=demo.sp.address)
        first_ms = (time.perf_counter() - started) * 1000
        assert proof.amount == PRICE and proof.payer == demo.dashboard and proof.tx_hash == tx

        timings = []
        for _ in range(20):
            started = time.perf_counter()
            await verifier.verify_funding(tx, "anvil-job-1", demo.provider, PRICE, arbiter=demo.sp.address)
            timings.append((time.perf_counter() - started) * 1000)
        print(f"\nverify_funding on anvil: first {first_ms:.1f} ms, median {statistics.median(timings):.1f} ms")

        assert demo.w3.eth.get_balance(demo.provider) == 0
        release_tx = await settler.release("anvil-job-1")
        assert release_tx is not None
        assert demo.w3.eth.get_balance(demo.provider) == PRICE  # exactly the amount
        assert await settler.release("anvil-job-1") is None

        with pytest.raises(PaymentRejected) as info:
            await verifier.verify_funding(tx, "anvil-job-1", demo.provider, PRICE, arbiter=demo.sp.address)
        assert info.value.reason == "released"
    finally:
        await verifier.close()
        await settler.close()


async def test_refund_returns_exactly_the_deposit_on_anvil(anvil: Anvil, tmp_path: Path) -> None:
    demo = Demo(anvil, tmp_path)
    demo.deposit("anvil-job-2")
    before = demo.w3.eth.get_balance(demo.dashboard)
    settler = demo.settler(demo.sp)
    try:
        assert await settler.refund("anvil-job-2") is not None
    finally:
        await settler.close()
    assert demo.w3.eth.get_balance(demo.dashboard) == before + PRICE


async def test_wait_for_funding_follows_new_blocks_on_anvil(anvil: Anvil, tmp_path: Path) -> None:
    demo = Demo(anvil, tmp_path)
    tx = demo.deposit("anvil-job-3")
    verifier = demo.verifier(confirmations=3)

    async def miner() -> None:
        for _ in range(2):
            await asyncio.sleep(0.2)
            await asyncio.to_thread(anvil.mine)

    try:
        with pytest.raises(PaymentRejected) as info:
            await verifier.verify_funding(tx, "anvil-job-3", demo.provider, PRICE, arbiter=demo.sp.address)
        assert info.value.reason == "too few confirmations"
        mining = asyncio.create_task(miner())
        proof = await verifier.wait_for_funding(
            tx, "anvil-job-3", demo.provider, PRICE, arbiter=demo.sp.address, timeout_s=10
        )
        await mining
        assert proof.confirmations >= 3
    finally:
        await verifier.close()


async def test_an_arbiter_without_gas_gets_a_clear_error_on_anvil(anvil: Anvil, tmp_path: Path) -> None:
    demo = Demo(anvil, tmp_path)
    broke = Wallet.load_or_create(tmp_path / "broke")
    demo.deposit("anvil-job-4", arbiter=broke.address)
    settler = demo.settler(broke)
    try:
        with pytest.raises(SettlementError) as info:
            await settler.refund("anvil-job-4")
    finally:
        await settler.close()
    assert info.value.code == "no_gas" and broke.address in str(info.value)


async def test_wrong_chain_on_anvil(anvil: Anvil, tmp_path: Path) -> None:
    demo = Demo(anvil, tmp_path)
    tx = demo.deposit("anvil-job-5")
    verifier = EscrowVerifier.connect(anvil.url, chain_id=1, escrow_address=demo.escrow.address)
    try:
        with pytest.raises(PaymentRejected) as info:
            await verifier.verify_funding(tx, "anvil-job-5", demo.provider, PRICE, arbiter=demo.sp.address)
    finally:
        await verifier.close()
    assert info.value.reason == "wrong chain"
