"""Payment errors. A rejection's reason is one short phrase from `Reason`: the user reads it in `job-failed`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dms.errors import DmsError


class Reason(StrEnum):
    """Why a funding transaction does not pay for a job. The values are what users see; keep them short."""

    MALFORMED_TX_HASH = "malformed tx hash"
    UNKNOWN_TX = "unknown tx"
    REVERTED = "reverted"
    WRONG_CHAIN = "wrong chain"
    TOO_FEW_CONFIRMATIONS = "too few confirmations"
    """Also a reorg: the receipt's block is no longer the chain's block at that height (it may come back)."""
    WRONG_CONTRACT = "wrong contract"
    WRONG_JOB = "wrong job"
    WRONG_PROVIDER = "wrong provider"
    WRONG_ARBITER = "wrong arbiter"
    UNDERPAID = "underpaid"
    DEADLINE_TOO_SOON = "deadline too soon"
    NOT_FUNDED = "not funded"
    RELEASED = "released"
    REFUNDED = "refunded"
    CHAIN_UNREACHABLE = "chain unreachable"
    NOT_CONFIRMED = "payment not confirmed"
    """`wait_for_funding` ran out of time while the payment was still pending."""


RETRYABLE = frozenset({Reason.UNKNOWN_TX, Reason.TOO_FEW_CONFIRMATIONS, Reason.CHAIN_UNREACHABLE})
"""Reasons that may change by waiting: the tx is not mined yet, not deep enough, or the RPC is down."""


@dataclass
class PaymentRejected(DmsError):
    """The transaction does not (or not yet) pay for the job. `message` is the `Reason`; `details` says more."""

    code: str = "payment_rejected"

    @property
    def reason(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.message in RETRYABLE


@dataclass
class SettlementError(DmsError):
    """A release or refund could not be sent or did not succeed; the message says what to do.

    `code` is `no_gas` when the wallet cannot pay for the transaction (fund its address), `wrong_state`
    when the escrow is not funded or already settled the other way, `not_allowed` when this wallet may not
    settle that escrow, `failed` otherwise.
    """

    code: str = "failed"


@dataclass
class WalletError(DmsError):
    """The node's EVM key file cannot be read, created or used; the message names the file."""

    code: str = "wallet_error"
