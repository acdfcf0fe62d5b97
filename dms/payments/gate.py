"""What the job services need from payments, for `payment.mode` "none" and "escrow" alike.

The composition root picks one; the services never branch on the mode themselves except through
`escrow` (whether a quote names an escrow and a deposit is needed at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dms.payments.contract import escrow_job_id_hex
from dms.payments.errors import PaymentRejected, Reason, SettlementError
from dms.payments.settle import Outcome, SentHook, settlement

if TYPE_CHECKING:
    from dms.payments.settle import Settler
    from dms.payments.verify import EscrowVerifier

log = logging.getLogger(__name__)


class PaymentGate(Protocol):
    escrow: bool

    def quote_fields(self, job_id: str) -> dict[str, Any]:
        """What a quote adds about the escrow (empty without one)."""

    async def verify(
        self, tx_hash: str | None, job_id: str, provider: str, amount: int, arbiter: str | None,
        min_deadline: int | None = None,
    ) -> str:  # fmt: skip
        """The normalised tx hash once the deposit is confirmed, and the payer cannot refund it before
        `min_deadline` (unix seconds) when given. Raises PaymentRejected (reason = one phrase)."""

    async def refund_delay_s(self) -> int | None:
        """How long after a deposit its payer may refund it (None without escrow). Raises PaymentRejected."""

    async def settle(self, job_id: str, outcome: Outcome, on_sent: SentHook | None = None) -> tuple[str, str | None]:
        """Release or refund by the settlement table: (action, tx hash or None when nothing was sent);
        `on_sent` hears the tx hash once it is broadcast.

        Raises SettlementError saying why (no gas, wrong state, ...)."""

    async def close(self) -> None: ...


class NoPayments:
    """`payment.mode = "none"`: the dashboard's word is taken; nothing is on a chain."""

    escrow = False

    def quote_fields(self, job_id: str) -> dict[str, Any]:
        return {}

    async def verify(
        self, tx_hash: str | None, job_id: str, provider: str, amount: int, arbiter: str | None,
        min_deadline: int | None = None,
    ) -> str:  # fmt: skip
        return tx_hash or ""

    async def refund_delay_s(self) -> int | None:
        return None

    async def settle(self, job_id: str, outcome: Outcome, on_sent: SentHook | None = None) -> tuple[str, str | None]:
        return settlement(outcome).value, None

    async def close(self) -> None:
        return None


@dataclass
class EscrowPayments:
    """`payment.mode = "escrow"`: deposits are verified on-chain; the SP's wallet settles as arbiter."""

    verifier: EscrowVerifier
    settler: Settler | None
    """The SP side's; a pure provider never settles, but every node can act as SP."""
    arbiter: str
    timeout_s: float
    escrow: bool = True

    def quote_fields(self, job_id: str) -> dict[str, Any]:
        return {
            "escrow_job_id": escrow_job_id_hex(job_id),
            "escrow_address": self.verifier.escrow_address,
            "arbiter": self.arbiter,
            "chain_id": self.verifier.chain_id,
        }

    async def verify(
        self, tx_hash: str | None, job_id: str, provider: str, amount: int, arbiter: str | None,
        min_deadline: int | None = None,
    ) -> str:  # fmt: skip
        if not tx_hash:
            raise PaymentRejected(Reason.MALFORMED_TX_HASH, "send-status carried no tx_hash")
        proof = await self.verifier.wait_for_funding(
            tx_hash, job_id, provider, amount, arbiter=arbiter, min_deadline=min_deadline, timeout_s=self.timeout_s
        )
        return proof.tx_hash

    async def refund_delay_s(self) -> int | None:
        return await self.verifier.refund_delay_s()

    async def settle(self, job_id: str, outcome: Outcome, on_sent: SentHook | None = None) -> tuple[str, str | None]:
        action = settlement(outcome)
        if self.settler is None:
            raise SettlementError("this node has no wallet to settle with", None, "not_allowed")
        return action.value, await self.settler.settle(job_id, action, on_sent)

    async def close(self) -> None:
        await self.verifier.close()
        if self.settler is not None:
            await self.settler.close()
