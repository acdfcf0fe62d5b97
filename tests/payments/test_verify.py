"""The funding verifier on the in-process chain: one valid deposit, then each rejection by varying one thing."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from hexbytes import HexBytes
from web3.contract import Contract
from web3.providers.eth_tester import AsyncEthereumTesterProvider
from web3.types import Wei

from dms.payments.contract import escrow_job_id, escrow_job_id_hex
from dms.payments.errors import PaymentRejected, Reason
from dms.payments.verify import EscrowVerifier, FundingProof, normalise_tx_hash
from tests.payments.tester import LocalChain

JOB = "job-7f3a"
PRICE = 10**15


class Case:
    """A valid payment for JOB at PRICE, and the verifier both sides would use."""

    def __init__(self, chain: LocalChain, escrow: Contract) -> None:
        self.chain, self.escrow = chain, escrow
        self.payer, self.provider, self.arbiter, self.stranger = chain.accounts[1:5]

    def deposit(
        self, job: str = JOB, value: int = PRICE, *, provider: str = "", arbiter: str = "", gas: int | None = None
    ) -> str:
        """The valid deposit, or the same with one thing changed."""
        provider, arbiter = provider or self.provider, arbiter or self.arbiter
        return self.chain.deposit(self.escrow, job, provider, arbiter, value, sender=self.payer, gas=gas)

    def verifier(self, **kw: Any) -> EscrowVerifier:
        opts: dict[str, Any] = {"chain_id": self.chain.chain_id, "escrow_address": self.escrow.address, **kw}
        return EscrowVerifier(self.chain.aw3, poll_interval_s=0.05, **opts)

    async def verify(self, tx: str, verifier: EscrowVerifier | None = None, **kw: Any) -> FundingProof:
        args: dict[str, Any] = {"job_id": JOB, "provider": self.provider, "min_amount": PRICE, "arbiter": self.arbiter}
        return await (verifier or self.verifier()).verify_funding(tx, **{**args, **kw})

    async def rejected(self, tx: str, verifier: EscrowVerifier | None = None, **kw: Any) -> PaymentRejected:
        with pytest.raises(PaymentRejected) as info:
            await self.verify(tx, verifier, **kw)
        return info.value


@pytest.fixture
def case(chain: LocalChain, escrow: Contract) -> Case:
    return Case(chain, escrow)


async def test_a_valid_deposit_is_accepted(case: Case) -> None:
    tx = case.deposit()
    proof = await case.verify(tx.upper().replace("0X", "0x"))
    assert proof.tx_hash == tx.lower()
    assert proof.job_id == JOB and proof.escrow_job_id == escrow_job_id_hex(JOB)
    assert (proof.payer, proof.provider, proof.arbiter) == (case.payer, case.provider, case.arbiter)
    assert proof.amount == PRICE and proof.chain_id == case.chain.chain_id
    assert proof.escrow_address == case.escrow.address and proof.confirmations == 1
    assert proof.deadline >= case.chain.latest_timestamp() + 3600 - 5
    overpaid = await case.verify(case.deposit(job="job-2", value=PRICE + 1), job_id="job-2")
    assert overpaid.amount == PRICE + 1


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0x",
        "0x1",
        "0x" + "a" * 63,
        "0x" + "a" * 65,
        "a" * 64,
        "0X" + "a" * 64,
        "0x" + "g" * 64,
        " 0x" + "a" * 64,
        "0x" + "a" * 64 + "\n",
        None,
        12,
        b"0x" + b"a" * 64,
    ],
)
async def test_malformed_tx_hash(case: Case, bad: Any) -> None:
    assert (await case.rejected(bad)).reason == Reason.MALFORMED_TX_HASH
    with pytest.raises(PaymentRejected):
        normalise_tx_hash(bad)


async def test_unknown_tx(case: Case) -> None:
    case.deposit()
    rejected = await case.rejected("0x" + "ab" * 32)
    assert rejected.reason == "unknown tx" and rejected.retryable


async def test_reverted(case: Case) -> None:
    tx = case.deposit(gas=30_000)  # the same deposit, out of gas: mined with status 0
    assert (await case.rejected(tx)).reason == "reverted"


async def test_wrong_chain(case: Case) -> None:
    tx = case.deposit()
    rejected = await case.rejected(tx, case.verifier(chain_id=case.chain.chain_id + 1))
    assert rejected.reason == "wrong chain" and not rejected.retryable


async def test_too_few_confirmations_then_enough(case: Case) -> None:
    tx = case.deposit()
    verifier = case.verifier(required_confirmations=3)
    rejected = await case.rejected(tx, verifier)
    assert rejected.reason == "too few confirmations" and rejected.retryable
    case.chain.mine(1)
    assert (await case.rejected(tx, verifier)).reason == "too few confirmations"
    case.chain.mine(1)
    assert (await case.verify(tx, verifier)).confirmations == 3


async def test_reorg_between_receipt_and_block_is_too_few_confirmations(case: Case) -> None:
    """The receipt names a block that the chain no longer has at that height."""
    snapshot = case.chain.tester.take_snapshot()
    tx = case.deposit()
    case.chain.mine(2)
    tester = case.chain.tester

    class Reorging(AsyncEthereumTesterProvider):
        def __init__(self) -> None:
            super().__init__()
            self.ethereum_tester = tester

        async def make_request(self, method: Any, params: Any) -> Any:
            response = await super().make_request(method, params)
            if method == "eth_getTransactionReceipt":
                tester.revert_to_snapshot(snapshot)  # the deposit's block is dropped...
                tester.mine_blocks(4)  # ...and a longer chain without it wins
            return response

    verifier = EscrowVerifier(
        LocalChain(Reorging()).aw3, chain_id=case.chain.chain_id, escrow_address=case.escrow.address
    )
    rejected = await case.rejected(tx, verifier)
    assert rejected.reason == "too few confirmations" and "changed (reorg)" in str(rejected.details)
    assert (await case.rejected(tx)).reason == "unknown tx"  # and the tx is gone for good


async def test_wrong_contract_copycat_emits_an_identical_funded_event(case: Case) -> None:
    copycat = case.chain.deploy_copycat()
    fn = copycat.functions.deposit(escrow_job_id(JOB), case.provider, case.arbiter)
    tx = "0x" + bytes(case.chain.wait(fn.transact({"from": case.payer}))["transactionHash"]).hex()
    # web3 itself decodes the look-alike as our event: the address check is ours to make.
    receipt = case.chain.w3.eth.get_transaction_receipt(HexBytes(tx))
    (fake,) = case.escrow.events.Funded().process_receipt(receipt)
    assert fake["args"]["amount"] >= PRICE and fake["address"] == copycat.address
    assert (await case.rejected(tx)).reason == "wrong contract"


async def test_copycat_wrapping_a_small_real_deposit_is_underpaid(case: Case) -> None:
    """Only the escrow's own log counts, not the wrapper's claim of a huge amount in the same tx."""
    copycat = case.chain.deploy_copycat()
    fn = copycat.functions.deposit_via(case.escrow.address, escrow_job_id(JOB), case.provider, case.arbiter)
    receipt = case.chain.wait(fn.transact({"from": case.payer, "value": Wei(PRICE - 1)}))
    rejected = await case.rejected("0x" + bytes(receipt["transactionHash"]).hex())
    assert rejected.reason == "underpaid"


async def test_wrong_job(case: Case) -> None:
    tx = case.deposit(job="job-other")
    assert (await case.rejected(tx)).reason == "wrong job"


async def test_wrong_provider(case: Case) -> None:
    tx = case.deposit(provider=case.stranger)
    assert (await case.rejected(tx)).reason == "wrong provider"


async def test_wrong_arbiter(case: Case) -> None:
    tx = case.deposit(arbiter=case.payer)  # the payer as arbiter could release and refund at will
    assert (await case.rejected(tx)).reason == "wrong arbiter"
    assert (await case.verify(tx, arbiter=None)).arbiter == case.payer


async def test_underpaid(case: Case) -> None:
    tx = case.deposit(value=PRICE - 1)
    rejected = await case.rejected(tx)
    assert rejected.reason == "underpaid" and str(PRICE - 1) in str(rejected.details)


async def test_deadline_too_soon(case: Case) -> None:
    tx = case.deposit()
    end_of_job = case.chain.latest_timestamp() + 7200
    assert (await case.rejected(tx, min_deadline=end_of_job)).reason == "deadline too soon"
    assert (await case.verify(tx, min_deadline=end_of_job - 3600)).amount == PRICE


@pytest.mark.parametrize(("fn", "reason"), [("release", "released"), ("refund", "refunded")])
async def test_settled_escrow_is_not_funded_any_more(case: Case, fn: str, reason: str) -> None:
    tx = case.deposit()
    await case.verify(tx)
    case.chain.wait(getattr(case.escrow.functions, fn)(escrow_job_id(JOB)).transact({"from": case.arbiter}))
    assert (await case.rejected(tx)).reason == reason


async def test_not_funded_a_plain_transfer(case: Case) -> None:
    receipt = case.chain.wait(
        case.chain.w3.eth.send_transaction({"from": case.payer, "to": case.provider, "value": Wei(PRICE)})
    )
    assert receipt["status"] == 1
    assert (await case.rejected("0x" + bytes(receipt["transactionHash"]).hex())).reason == "not funded"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_chain_unreachable(case: Case) -> None:
    verifier = EscrowVerifier.connect(
        f"http://127.0.0.1:{_closed_port()}", chain_id=1, escrow_address=case.escrow.address, request_timeout_s=2
    )
    try:
        rejected = await case.rejected("0x" + "ab" * 32, verifier)
    finally:
        await verifier.close()
    assert rejected.reason == "chain unreachable" and rejected.retryable


async def test_wait_for_funding_returns_once_confirmed(case: Case) -> None:
    tx = case.deposit()
    verifier = case.verifier(required_confirmations=3)

    async def miner() -> None:
        for _ in range(2):
            await asyncio.sleep(0.15)
            case.chain.mine(1)

    mining = asyncio.create_task(miner())
    proof = await verifier.wait_for_funding(tx, JOB, case.provider, PRICE, arbiter=case.arbiter, timeout_s=5)
    await mining
    assert proof.confirmations >= 3


async def test_wait_for_funding_times_out_while_pending(case: Case) -> None:
    verifier = case.verifier(required_confirmations=5)
    for tx, last in [(case.deposit(), "too few confirmations"), ("0x" + "cd" * 32, "unknown tx")]:
        started = time.monotonic()
        with pytest.raises(PaymentRejected) as info:
            await verifier.wait_for_funding(tx, JOB, case.provider, PRICE, arbiter=case.arbiter, timeout_s=0.4)
        assert 0.35 < time.monotonic() - started < 2
        assert info.value.reason == "payment not confirmed" and last in str(info.value.details)


async def test_wait_for_funding_rejects_a_bad_payment_at_once(case: Case) -> None:
    tx = case.deposit(value=PRICE - 1)
    started = time.monotonic()
    with pytest.raises(PaymentRejected) as info:
        await case.verifier().wait_for_funding(tx, JOB, case.provider, PRICE, arbiter=case.arbiter, timeout_s=30)
    assert info.value.reason == "underpaid" and time.monotonic() - started < 2


def test_rejection_is_a_domain_error_whose_text_is_the_reason() -> None:
    e = PaymentRejected(Reason.UNDERPAID, "deposited 1 wei")
    assert str(e) == "underpaid" and e.reason == "underpaid" and e.code == "payment_rejected"
    assert {r.value for r in Reason} >= {
        "malformed tx hash",
        "unknown tx",
        "reverted",
        "wrong chain",
        "too few confirmations",
        "wrong contract",
        "wrong job",
        "wrong provider",
        "underpaid",
        "refunded",
        "released",
        "not funded",
        "payment not confirmed",
    }
