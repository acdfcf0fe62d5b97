# pragma version 0.4.3
# @license Apache-2.0
"""
@title dms job escrow
@notice A service provider's dashboard (the payer) deposits a job's price for one compute provider.
        The arbiter (the SP's wallet) or the payer releases it to the provider; the provider or the
        arbiter refunds it at any time, the payer once the deadline has passed. A job id funds once,
        ever, and ends released or refunded, never both.
"""

event Funded:
    job_id: indexed(bytes32)
    payer: address
    provider: address
    arbiter: address
    amount: uint256

event Released:
    job_id: indexed(bytes32)
    provider: address
    amount: uint256

event Refunded:
    job_id: indexed(bytes32)
    payer: address
    amount: uint256

UNFUNDED: constant(uint8) = 0
FUNDED: constant(uint8) = 1
RELEASED: constant(uint8) = 2
REFUNDED: constant(uint8) = 3

struct Escrow:
    payer: address
    provider: address
    arbiter: address
    amount: uint256
    deadline: uint256
    state: uint8

escrows: public(HashMap[bytes32, Escrow])
refund_delay: public(immutable(uint256))


@deploy
def __init__(refund_delay_s: uint256):
    refund_delay = refund_delay_s


@external
@view
def state(job_id: bytes32) -> uint8:
    """@notice 0 none, 1 funded, 2 released, 3 refunded."""
    return self.escrows[job_id].state


@external
@payable
def deposit(job_id: bytes32, provider: address, arbiter: address):
    assert self.escrows[job_id].state == UNFUNDED, "job already funded"
    assert msg.value > 0, "no value"
    assert provider != empty(address), "no provider"
    assert arbiter != empty(address), "no arbiter"
    self.escrows[job_id] = Escrow(
        payer=msg.sender,
        provider=provider,
        arbiter=arbiter,
        amount=msg.value,
        deadline=block.timestamp + refund_delay,
        state=FUNDED,
    )
    log Funded(job_id=job_id, payer=msg.sender, provider=provider, arbiter=arbiter, amount=msg.value)


@external
@nonreentrant
def release(job_id: bytes32):
    e: Escrow = self.escrows[job_id]
    assert e.state == FUNDED, "not funded"
    assert msg.sender == e.payer or msg.sender == e.arbiter, "only payer or arbiter"
    self.escrows[job_id].state = RELEASED
    log Released(job_id=job_id, provider=e.provider, amount=e.amount)
    raw_call(e.provider, b"", value=e.amount)


@external
@nonreentrant
def refund(job_id: bytes32):
    e: Escrow = self.escrows[job_id]
    assert e.state == FUNDED, "not funded"
    if msg.sender != e.provider and msg.sender != e.arbiter:
        assert msg.sender == e.payer, "only provider, arbiter or payer"
        assert block.timestamp >= e.deadline, "deadline not reached"
    self.escrows[job_id].state = REFUNDED
    log Refunded(job_id=job_id, payer=e.payer, amount=e.amount)
    raw_call(e.payer, b"", value=e.amount)
