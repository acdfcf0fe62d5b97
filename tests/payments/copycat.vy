# pragma version 0.4.3
# A hostile look-alike of dms's escrow, for tests only: it emits the very same `Funded` event without
# holding anything (`deposit`), or wraps a real, smaller deposit in a fake big one (`deposit_via`).

interface Escrow:
    def deposit(job_id: bytes32, provider: address, arbiter: address): payable

event Funded:
    job_id: indexed(bytes32)
    payer: address
    provider: address
    arbiter: address
    amount: uint256

CLAIMED: constant(uint256) = 10 ** 30


@external
def deposit(job_id: bytes32, provider: address, arbiter: address):
    log Funded(job_id=job_id, payer=msg.sender, provider=provider, arbiter=arbiter, amount=CLAIMED)


@external
@payable
def deposit_via(escrow: address, job_id: bytes32, provider: address, arbiter: address):
    log Funded(job_id=job_id, payer=msg.sender, provider=provider, arbiter=arbiter, amount=CLAIMED)
    extcall Escrow(escrow).deposit(job_id, provider, arbiter, value=msg.value)
