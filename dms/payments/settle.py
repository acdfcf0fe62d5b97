"""Settlement: which way a job's escrow goes (a pure table), and sending that release or refund.

The table (docs/settlement.md): the provider is paid when it ran what was paid for, whatever the exit
code; the payer gets the money back when the job never ran or the provider vanished mid-run.
The SP's wallet is the escrow's arbiter and sends the transaction; it needs gas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dms.payments.contract import EscrowState, escrow_job_id, load_artifact
from dms.payments.errors import SettlementError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3


NO_FUNDS_PHRASES = ("insufficient funds", "cannot afford", "gas required exceeds allowance")
"""How nodes say the sender cannot pay for gas (geth/anvil, eth-tester, geth's estimate)."""


class Action(StrEnum):
    RELEASE = "release"
    """Pay the provider."""
    REFUND = "refund"
    """Give the deposit back to the payer."""


class Outcome(StrEnum):
    """How a paid job ended, as far as settlement cares."""

    COMPLETED = "completed"
    EXITED_NONZERO = "exited_nonzero"
    MEMORY_LIMIT = "memory_limit"
    """Stopped at its own memory limit."""
    TIME_LIMIT = "time_limit"
    """Stopped at its own time limit (duration_s)."""
    REFUSED = "refused"
    """The CP refused the job."""
    NOT_ADMITTED = "not_admitted"
    """Never admitted: no CP answered, the SP could not dispatch it."""
    FAILED_BEFORE_START = "failed_before_start"
    """Admitted but the container never started: image missing, the CP's payment check failed, ..."""
    PROVIDER_LOST = "provider_lost"
    """The CP went silent mid-run (3 heartbeats)."""
    CANCELLED_BEFORE_START = "cancelled_before_start"
    CANCELLED_AFTER_START = "cancelled_after_start"


SETTLEMENT: Mapping[Outcome, Action] = MappingProxyType(
    {
        Outcome.COMPLETED: Action.RELEASE,
        Outcome.EXITED_NONZERO: Action.RELEASE,
        Outcome.MEMORY_LIMIT: Action.RELEASE,
        Outcome.TIME_LIMIT: Action.RELEASE,
        Outcome.REFUSED: Action.REFUND,
        Outcome.NOT_ADMITTED: Action.REFUND,
        Outcome.FAILED_BEFORE_START: Action.REFUND,
        Outcome.PROVIDER_LOST: Action.REFUND,
        Outcome.CANCELLED_BEFORE_START: Action.REFUND,
        Outcome.CANCELLED_AFTER_START: Action.RELEASE,
    }
)
"""The one settlement table. Every Outcome has a row (a unit test checks it)."""


def settlement(outcome: Outcome) -> Action:
    """Which way the escrow goes for a job that ended with `outcome`."""
    return SETTLEMENT[outcome]


def outcome_of(final_state: str, *, container_started: bool, provider_lost: bool = False) -> Outcome:
    """Classify an ended job from plain facts: its final state ("completed", "failed" or "cancelled"),
    whether its container ever started, and whether the SP lost the CP mid-run.

    A failure after the container started is the job's own (non-zero exit or its own limits); limits are
    not told apart here because they settle the same way. Raises ValueError on any other state.
    """
    if provider_lost:
        return Outcome.PROVIDER_LOST if container_started else Outcome.NOT_ADMITTED
    if final_state == "completed":
        return Outcome.COMPLETED
    if final_state == "failed":
        return Outcome.EXITED_NONZERO if container_started else Outcome.FAILED_BEFORE_START
    if final_state == "cancelled":
        return Outcome.CANCELLED_AFTER_START if container_started else Outcome.CANCELLED_BEFORE_START
    raise ValueError(f"not a final job state: {final_state!r}")


SentHook = Callable[[str], Awaitable[None]]
"""Told the tx hash of a release or refund once it is broadcast (before its receipt is waited for)."""


class Settler:
    """Sends release and refund transactions for one escrow from one wallet (the SP's, the arbiter).

    Idempotent per job: settling again the same way is a no-op (returns None). Transactions from this
    settler are serialised so their nonces do not collide.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        account: LocalAccount,
        *,
        chain_id: int,
        escrow_address: str,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.chain_id = chain_id
        self.escrow_address = w3.to_checksum_address(escrow_address)
        self.receipt_timeout_s = receipt_timeout_s
        self._escrow = w3.eth.contract(address=self.escrow_address, abi=load_artifact().abi)
        self._lock = asyncio.Lock()

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        account: LocalAccount,
        *,
        chain_id: int,
        escrow_address: str,
        request_timeout_s: float = 10.0,
        receipt_timeout_s: float = 120.0,
    ) -> Settler:
        """A settler over JSON-RPC at `rpc_url` (imports web3 here); `account` from `Wallet.account()`."""
        from dms.payments.chain import connect_http

        w3 = connect_http(rpc_url, request_timeout_s)
        return cls(w3, account, chain_id=chain_id, escrow_address=escrow_address, receipt_timeout_s=receipt_timeout_s)

    async def close(self) -> None:
        """Close the provider's HTTP session, if it has one."""
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    @property
    def address(self) -> str:
        return str(self.account.address)

    async def release(self, job_id: str) -> str | None:
        """Pay the job's deposit to its provider. Returns the tx hash, or None when it was already released.

        Raises SettlementError: no_gas (fund the wallet), wrong_state (not funded, or refunded),
        not_allowed (this wallet is neither the payer nor the arbiter), failed (reverted, timed out, RPC).
        """
        return await self.settle(job_id, Action.RELEASE)

    async def refund(self, job_id: str) -> str | None:
        """Give the job's deposit back to its payer. Returns the tx hash, or None when already refunded.

        Raises SettlementError like `release` (not_allowed: neither provider, arbiter, nor the payer after
        the deadline).
        """
        return await self.settle(job_id, Action.REFUND)

    async def settle(self, job_id: str, action: Action, on_sent: SentHook | None = None) -> str | None:
        """Send `action` for `job_id` and wait for its receipt (`on_sent` hears the tx hash once it is
        broadcast, before the wait). See `release` for the errors."""
        key = escrow_job_id(job_id)
        async with self._lock:
            try:
                return await self._settle(job_id, key, action, on_sent)
            except SettlementError:
                raise
            except Exception as e:  # RPC, signing or timeout: one error type for the caller
                if any(phrase in str(e).lower() for phrase in NO_FUNDS_PHRASES):
                    raise self._no_gas(job_id, action, None, None) from e
                raise SettlementError(f"{action} of job {job_id} failed: {type(e).__name__}: {e}") from e

    async def _settle(self, job_id: str, key: bytes, action: Action, on_sent: SentHook | None = None) -> str | None:
        w3, me = self.w3, self.address
        payer, provider, arbiter, _amount, deadline, raw_state = await self._escrow.functions.escrows(key).call()
        state = EscrowState(raw_state)
        done = EscrowState.RELEASED if action is Action.RELEASE else EscrowState.REFUNDED
        if state is done:
            return None
        if state is not EscrowState.FUNDED:
            what = state.name.lower()
            raise SettlementError(f"cannot {action} job {job_id}: the escrow is {what}", code="wrong_state")
        me_, payer_, arbiter_ = me.lower(), payer.lower(), arbiter.lower()
        if action is Action.RELEASE and me_ not in (payer_, arbiter_):
            raise SettlementError(f"wallet {me} may not release job {job_id}: arbiter is {arbiter}", code="not_allowed")
        if action is Action.REFUND and me_ not in (provider.lower(), arbiter_):
            if me_ != payer_:
                why = f"wallet {me} may not refund job {job_id}: arbiter is {arbiter}"
                raise SettlementError(why, code="not_allowed")
            if (await w3.eth.get_block("latest"))["timestamp"] < deadline:
                why = f"the payer may refund job {job_id} only from {deadline}"
                raise SettlementError(why, code="not_allowed")

        fn = self._escrow.functions.release(key) if action is Action.RELEASE else self._escrow.functions.refund(key)
        balance = await w3.eth.get_balance(me)  # type: ignore[arg-type]
        if balance == 0:
            raise self._no_gas(job_id, action, balance, None)
        nonce = await w3.eth.get_transaction_count(me, "pending")  # type: ignore[arg-type]
        try:
            tx = await fn.build_transaction({"from": me, "nonce": nonce, "chainId": self.chain_id})
        except Exception as e:  # the node estimates gas, and may refuse a sender that cannot pay for it
            if any(phrase in str(e).lower() for phrase in NO_FUNDS_PHRASES):
                raise self._no_gas(job_id, action, balance, None) from e
            raise
        cost = int(tx["gas"]) * int(tx.get("maxFeePerGas") or tx.get("gasPrice") or 0)
        if balance < cost:
            raise self._no_gas(job_id, action, balance, cost)
        signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        if on_sent is not None:
            await on_sent("0x" + bytes(tx_hash).hex())
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s)
        if receipt["status"] != 1:
            raise SettlementError(f"{action} of job {job_id} reverted in tx 0x{bytes(tx_hash).hex()}")
        return "0x" + bytes(tx_hash).hex()

    def _no_gas(self, job_id: str, action: Action, balance: int | None, cost: int | None) -> SettlementError:
        have = f"balance {balance} wei" if balance is not None else "balance too low"
        need = f", needs about {cost} wei" if cost else ""
        return SettlementError(
            f"the SP wallet {self.address} has no gas to {action} job {job_id} ({have}{need}): "
            "fund this address (nunet wallet show)",
            code="no_gas",
        )
