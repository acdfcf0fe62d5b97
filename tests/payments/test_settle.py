"""Settlement: the table (pure), and release/refund sent from the SP's wallet on the in-process chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3.contract import Contract
from web3.types import Wei

from dms.payments.contract import EscrowState, escrow_job_id
from dms.payments.errors import SettlementError
from dms.payments.settle import SETTLEMENT, Action, Outcome, Settler, outcome_of, settlement
from dms.payments.wallet import Wallet
from tests.payments.tester import LocalChain

# docs/settlement.md: the table as written there, row by row.
TABLE = [
    (Outcome.COMPLETED, Action.RELEASE),
    (Outcome.EXITED_NONZERO, Action.RELEASE),
    (Outcome.MEMORY_LIMIT, Action.RELEASE),
    (Outcome.TIME_LIMIT, Action.RELEASE),
    (Outcome.REFUSED, Action.REFUND),
    (Outcome.NOT_ADMITTED, Action.REFUND),
    (Outcome.FAILED_BEFORE_START, Action.REFUND),
    (Outcome.PROVIDER_LOST, Action.REFUND),
    (Outcome.CANCELLED_BEFORE_START, Action.REFUND),
    (Outcome.CANCELLED_AFTER_START, Action.RELEASE),
]


@pytest.mark.parametrize(("outcome", "action"), TABLE)
def test_settlement_row(outcome: Outcome, action: Action) -> None:
    assert settlement(outcome) is action


def test_every_outcome_has_one_row() -> None:
    assert [o for o, _ in TABLE] == list(Outcome) == list(SETTLEMENT)


@pytest.mark.parametrize(
    ("state", "started", "lost", "expected"),
    [
        ("completed", True, False, Outcome.COMPLETED),
        ("failed", True, False, Outcome.EXITED_NONZERO),
        ("failed", False, False, Outcome.FAILED_BEFORE_START),
        ("cancelled", False, False, Outcome.CANCELLED_BEFORE_START),
        ("cancelled", True, False, Outcome.CANCELLED_AFTER_START),
        ("failed", True, True, Outcome.PROVIDER_LOST),
        ("failed", False, True, Outcome.NOT_ADMITTED),
    ],
)
def test_outcome_of_plain_facts(state: str, started: bool, lost: bool, expected: Outcome) -> None:
    assert outcome_of(state, container_started=started, provider_lost=lost) is expected


def test_outcome_of_a_running_job_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a final job state"):
        outcome_of("running", container_started=True)


AMOUNT = 10**15
GAS_MONEY = 10**18


class Sp:
    """The SP's wallet as the escrow's arbiter, on the in-process chain."""

    def __init__(self, chain: LocalChain, escrow: Contract, tmp_path: Path) -> None:
        self.chain, self.escrow = chain, escrow
        self.payer, self.provider, self.stranger = chain.accounts[1:4]
        self.wallet = Wallet.load_or_create(tmp_path / "sp")
        self.settler = Settler(chain.aw3, self.wallet.account(), chain_id=chain.chain_id, escrow_address=escrow.address)

    def fund_wallet(self, value: int = GAS_MONEY) -> None:
        self.chain.wait(
            self.chain.w3.eth.send_transaction(
                {"from": self.chain.accounts[0], "to": self.wallet.address, "value": Wei(value)}
            )
        )

    def deposit(self, job: str, arbiter: str | None = None) -> None:
        arbiter = arbiter or self.wallet.address
        self.chain.deposit(self.escrow, job, self.provider, arbiter, AMOUNT, sender=self.payer)

    def state(self, job: str) -> EscrowState:
        return EscrowState(self.escrow.functions.state(escrow_job_id(job)).call())


@pytest.fixture
def sp(chain: LocalChain, escrow: Contract, tmp_path: Path) -> Sp:
    return Sp(chain, escrow, tmp_path)


async def test_release_pays_the_provider_once(sp: Sp) -> None:
    sp.fund_wallet()
    sp.deposit("j1")
    before = sp.chain.balance(sp.provider)
    tx = await sp.settler.release("j1")
    assert tx is not None and tx.startswith("0x") and len(tx) == 66
    assert sp.chain.balance(sp.provider) == before + AMOUNT
    assert sp.state("j1") is EscrowState.RELEASED
    assert await sp.settler.release("j1") is None  # idempotent
    with pytest.raises(SettlementError) as info:
        await sp.settler.refund("j1")
    assert info.value.code == "wrong_state" and "released" in str(info.value)


async def test_refund_returns_the_deposit_to_the_payer(sp: Sp) -> None:
    sp.fund_wallet()
    sp.deposit("j2")
    before = sp.chain.balance(sp.payer)
    assert await sp.settler.settle("j2", settlement(Outcome.REFUSED)) is not None
    assert sp.chain.balance(sp.payer) == before + AMOUNT
    assert await sp.settler.refund("j2") is None
    with pytest.raises(SettlementError) as info:
        await sp.settler.release("j2")
    assert info.value.code == "wrong_state"


async def test_the_sent_hook_hears_the_tx_before_its_receipt(sp: Sp) -> None:
    sp.fund_wallet()
    sp.deposit("j3")
    heard: list[str] = []

    async def on_sent(tx: str) -> None:
        heard.append(tx)

    tx = await sp.settler.settle("j3", settlement(Outcome.COMPLETED), on_sent)
    assert heard == [tx] and sp.state("j3") is EscrowState.RELEASED  # told once, with the hash it returns


async def test_no_gas_is_a_clear_error(sp: Sp) -> None:
    sp.deposit("j3")
    with pytest.raises(SettlementError) as info:
        await sp.settler.release("j3")
    assert info.value.code == "no_gas"
    assert sp.wallet.address in str(info.value) and "fund" in str(info.value)
    sp.fund_wallet(1000)  # some wei, far from enough for the gas
    with pytest.raises(SettlementError) as info:
        await sp.settler.refund("j3")
    assert info.value.code == "no_gas" and "balance 1000 wei" in str(info.value), str(info.value)
    assert sp.state("j3") is EscrowState.FUNDED


async def test_a_wallet_that_is_not_the_arbiter_may_not_settle(sp: Sp) -> None:
    sp.fund_wallet()
    sp.deposit("j4", arbiter=sp.stranger)
    for settle in (sp.settler.release, sp.settler.refund):
        with pytest.raises(SettlementError) as info:
            await settle("j4")
        assert info.value.code == "not_allowed"
    assert sp.state("j4") is EscrowState.FUNDED


async def test_settling_an_unfunded_job_is_wrong_state(sp: Sp) -> None:
    sp.fund_wallet()
    with pytest.raises(SettlementError) as info:
        await sp.settler.release("never-paid")
    assert info.value.code == "wrong_state" and "none" in str(info.value)


async def test_concurrent_settlements_do_not_collide(sp: Sp) -> None:
    import asyncio

    sp.fund_wallet()
    jobs = [f"c{i}" for i in range(4)]
    for job in jobs:
        sp.deposit(job)
    hashes = await asyncio.gather(*(sp.settler.release(j) for j in jobs))
    assert len(set(hashes)) == 4
    assert all(sp.state(j) is EscrowState.RELEASED for j in jobs)
