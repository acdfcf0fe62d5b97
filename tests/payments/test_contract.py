"""The escrow contract: the committed artifact is what the source compiles to, and every rule holds on-chain."""

from __future__ import annotations

import json

import pytest
from web3.contract import Contract

from dms.payments import compile as build
from dms.payments.contract import ARTIFACT_PATH, SOURCE_PATH, EscrowState, escrow_job_id, load_artifact
from tests.payments.tester import REVERTS, LocalChain

AMOUNT = 10**15
DELAY = 3600


def test_committed_artifact_is_a_fresh_compile() -> None:
    fresh = build.compile_escrow()
    assert json.loads(ARTIFACT_PATH.read_text()) == fresh
    assert ARTIFACT_PATH.read_text() == build.render(fresh), "run: python -m dms.payments.compile"
    assert build.main(["--check"]) == 0
    assert load_artifact().compiler == f"vyper {build.VYPER_VERSION}"


def test_source_pragma_matches_the_pinned_compiler() -> None:
    assert f"# pragma version {build.VYPER_VERSION}" in SOURCE_PATH.read_text()


class Parties:
    def __init__(self, chain: LocalChain, escrow: Contract) -> None:
        self.chain, self.escrow = chain, escrow
        self.deployer, self.payer, self.provider, self.arbiter, self.stranger = chain.accounts[:5]

    def deposit(self, job: str = "job-1", value: int = AMOUNT) -> bytes:
        self.chain.deposit(self.escrow, job, self.provider, self.arbiter, value, sender=self.payer)
        return escrow_job_id(job)

    def call(self, fn: str, key: bytes, sender: str) -> None:
        self.chain.wait(getattr(self.escrow.functions, fn)(key).transact({"from": sender}))

    def state(self, key: bytes) -> EscrowState:
        return EscrowState(self.escrow.functions.state(key).call())


@pytest.fixture
def p(chain: LocalChain, escrow: Contract) -> Parties:
    return Parties(chain, escrow)


def test_deposit_records_the_escrow_and_logs_funded(p: Parties) -> None:
    before = p.chain.latest_timestamp()
    key = escrow_job_id("job-1")
    assert p.state(key) is EscrowState.NONE
    tx = p.chain.deposit(p.escrow, "job-1", p.provider, p.arbiter, AMOUNT, sender=p.payer)
    payer, provider, arbiter, amount, deadline, state = p.escrow.functions.escrows(key).call()
    assert (payer, provider, arbiter, amount, state) == (p.payer, p.provider, p.arbiter, AMOUNT, 1)
    assert before + DELAY <= deadline <= p.chain.latest_timestamp() + DELAY
    assert p.escrow.functions.refund_delay().call() == DELAY
    (event,) = p.escrow.events.Funded().process_receipt(p.chain.wait(tx))
    assert event["args"] == {
        "job_id": key,
        "payer": p.payer,
        "provider": p.provider,
        "arbiter": p.arbiter,
        "amount": AMOUNT,
    }
    assert p.chain.balance(p.escrow.address) == AMOUNT


@pytest.mark.parametrize("releaser", ["payer", "arbiter"])
def test_release_by_payer_or_arbiter_pays_the_provider(p: Parties, releaser: str) -> None:
    key = p.deposit()
    before = p.chain.balance(p.provider)
    tx = p.escrow.functions.release(key).transact({"from": getattr(p, releaser)})
    (event,) = p.escrow.events.Released().process_receipt(p.chain.wait(tx))
    assert event["args"] == {"job_id": key, "provider": p.provider, "amount": AMOUNT}
    assert p.chain.balance(p.provider) == before + AMOUNT
    assert p.state(key) is EscrowState.RELEASED
    assert p.chain.balance(p.escrow.address) == 0


@pytest.mark.parametrize("caller", ["provider", "stranger", "deployer"])
def test_release_by_anyone_else_reverts(p: Parties, caller: str) -> None:
    key = p.deposit()
    with pytest.raises(REVERTS, match="only payer or arbiter"):
        p.call("release", key, getattr(p, caller))
    assert p.state(key) is EscrowState.FUNDED


@pytest.mark.parametrize("refunder", ["provider", "arbiter"])
def test_refund_by_provider_or_arbiter_at_any_time(p: Parties, refunder: str) -> None:
    key = p.deposit()
    before = p.chain.balance(p.payer)
    tx = p.escrow.functions.refund(key).transact({"from": getattr(p, refunder)})
    (event,) = p.escrow.events.Refunded().process_receipt(p.chain.wait(tx))
    assert event["args"] == {"job_id": key, "payer": p.payer, "amount": AMOUNT}
    assert p.chain.balance(p.payer) == before + AMOUNT
    assert p.state(key) is EscrowState.REFUNDED


def test_payer_refunds_only_after_the_deadline(p: Parties) -> None:
    key = p.deposit()
    with pytest.raises(REVERTS, match="deadline not reached"):
        p.call("refund", key, p.payer)
    p.chain.time_travel(DELAY - 60)
    with pytest.raises(REVERTS, match="deadline not reached"):
        p.call("refund", key, p.payer)
    p.chain.time_travel(120)
    p.call("refund", key, p.payer)
    assert p.state(key) is EscrowState.REFUNDED
    assert p.chain.balance(p.escrow.address) == 0


def test_a_stranger_never_refunds(p: Parties) -> None:
    key = p.deposit()
    p.chain.time_travel(DELAY + 60)
    with pytest.raises(REVERTS, match="only provider, arbiter or payer"):
        p.call("refund", key, p.stranger)
    assert p.state(key) is EscrowState.FUNDED


def test_a_job_id_funds_once_ever(p: Parties) -> None:
    key = p.deposit()
    with pytest.raises(REVERTS, match="job already funded"):
        p.deposit()
    p.call("release", key, p.arbiter)
    with pytest.raises(REVERTS, match="job already funded"):
        p.deposit()
    other = p.deposit("job-2")
    p.call("refund", other, p.arbiter)
    with pytest.raises(REVERTS, match="job already funded"):
        p.deposit("job-2")


@pytest.mark.parametrize(
    ("first", "second"),
    [("release", "release"), ("refund", "refund"), ("refund", "release"), ("release", "refund")],
)
def test_no_second_settlement(p: Parties, first: str, second: str) -> None:
    key = p.deposit()
    p.call(first, key, p.arbiter)
    with pytest.raises(REVERTS, match="not funded"):
        p.call(second, key, p.arbiter)
    assert p.chain.balance(p.escrow.address) == 0


@pytest.mark.parametrize("fn", ["release", "refund"])
def test_settling_an_unknown_job_reverts(p: Parties, fn: str) -> None:
    with pytest.raises(REVERTS, match="not funded"):
        p.call(fn, escrow_job_id("never-funded"), p.arbiter)


def test_deposit_needs_value_provider_and_arbiter(p: Parties) -> None:
    zero = "0x" + "00" * 20
    with pytest.raises(REVERTS, match="no value"):
        p.deposit(value=0)
    with pytest.raises(REVERTS, match="no provider"):
        p.chain.deposit(p.escrow, "job-1", zero, p.arbiter, AMOUNT, sender=p.payer)
    with pytest.raises(REVERTS, match="no arbiter"):
        p.chain.deposit(p.escrow, "job-1", p.provider, zero, AMOUNT, sender=p.payer)
    assert p.state(escrow_job_id("job-1")) is EscrowState.NONE


def test_the_artifact_ships_with_the_package() -> None:
    """The verifier reads escrow.json at run time: pyproject's package-data must list it (wheel, .deb)."""
    import tomllib

    pyproject = tomllib.loads((ARTIFACT_PATH.parents[2] / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]["dms"]
    assert "payments/escrow.json" in package_data and "payments/escrow.vy" in package_data
