"""Checking on-chain that a transaction funds a job in our escrow. Used by the SP and by the CP before a job runs.

Nothing in the message is trusted: every fact is read from the chain, and each failure raises
`PaymentRejected` with one `Reason`. Replay (one tx funds one job) is the caller's store's business: key it
on `FundingProof.tx_hash` (normalised, lower case), unique.

web3 is imported only when a verifier is built (`EscrowVerifier.connect` or by the caller passing an
`AsyncWeb3`): the daemon does not pay for it when payments are off.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dms.payments.contract import FUNDED_DATA_TYPES, EscrowState, escrow_job_id, funded_topic, load_artifact
from dms.payments.errors import PaymentRejected, Reason

if TYPE_CHECKING:
    from web3 import AsyncWeb3

T = TypeVar("T")
TX_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}")


def normalise_tx_hash(tx_hash: object) -> str:
    """`tx_hash` in lower case, or PaymentRejected(malformed tx hash) unless it is exactly 0x and 64 hex digits.

    Strict on purpose: web3 left-pads short hashes, so "0x1" would otherwise name some other transaction.
    """
    if not isinstance(tx_hash, str) or not TX_HASH_RE.fullmatch(tx_hash):
        raise PaymentRejected(Reason.MALFORMED_TX_HASH, "expected 0x followed by 64 hex digits")
    return tx_hash.lower()


def _same_address(a: object, b: str) -> bool:
    return isinstance(a, str) and a.lower() == b.lower()


@dataclass(frozen=True)
class FundingProof:
    """What the chain says about a verified deposit. `tx_hash` is the replay key."""

    tx_hash: str
    job_id: str
    escrow_job_id: str
    escrow_address: str
    chain_id: int
    payer: str
    provider: str
    arbiter: str
    amount: int
    deadline: int
    block_number: int
    block_hash: str
    confirmations: int


class EscrowVerifier:
    """Verifies deposits into one escrow contract on one chain.

    `w3` is any `AsyncWeb3`: `connect` builds one over HTTP for real chains; tests pass one over
    web3's `AsyncEthereumTesterProvider`. The checks are the same code either way.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        *,
        chain_id: int,
        escrow_address: str,
        required_confirmations: int = 1,
        poll_interval_s: float = 1.0,
    ) -> None:
        if required_confirmations < 0:
            raise ValueError("required_confirmations must not be negative")
        self.w3 = w3
        self.chain_id = chain_id
        self.escrow_address = w3.to_checksum_address(escrow_address)
        self.required_confirmations = required_confirmations
        self.poll_interval_s = poll_interval_s
        self._escrow = w3.eth.contract(address=self.escrow_address, abi=load_artifact().abi)
        self._refund_delay: int | None = None

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        *,
        chain_id: int,
        escrow_address: str,
        required_confirmations: int = 1,
        request_timeout_s: float = 10.0,
        poll_interval_s: float = 1.0,
    ) -> EscrowVerifier:
        """A verifier over JSON-RPC at `rpc_url` (imports web3 here). Nothing is sent until the first check."""
        from dms.payments.chain import connect_http

        return cls(
            connect_http(rpc_url, request_timeout_s),
            chain_id=chain_id,
            escrow_address=escrow_address,
            required_confirmations=required_confirmations,
            poll_interval_s=poll_interval_s,
        )

    async def refund_delay_s(self) -> int:
        """The escrow's payer-refund delay (immutable in the contract; read once). PaymentRejected(chain
        unreachable) when it cannot be read."""
        if self._refund_delay is None:
            self._refund_delay = int(await self._rpc(self._escrow.functions.refund_delay().call()))
        return self._refund_delay

    async def close(self) -> None:
        """Close the provider's HTTP session, if it has one."""
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    async def _rpc(self, call: Awaitable[T]) -> T:
        """Await one RPC call; transport and node errors become PaymentRejected(chain unreachable)."""
        from aiohttp import ClientError
        from web3 import exceptions as x

        try:
            return await call
        except (OSError, ClientError, x.ProviderConnectionError, x.BadResponseFormat) as e:
            raise PaymentRejected(Reason.CHAIN_UNREACHABLE, f"{type(e).__name__}: {e}") from e
        except (x.TransactionNotFound, x.TransactionIndexingInProgress) as e:
            raise PaymentRejected(Reason.UNKNOWN_TX, "no receipt for this transaction (yet)") from e
        except x.BlockNotFound as e:
            raise PaymentRejected(Reason.TOO_FEW_CONFIRMATIONS, "its block is gone (reorg)") from e
        except x.Web3RPCError as e:
            raise PaymentRejected(Reason.CHAIN_UNREACHABLE, f"{type(e).__name__}: {e}") from e

    async def verify_funding(
        self,
        tx_hash: str,
        job_id: str,
        provider: str,
        min_amount: int,
        *,
        arbiter: str | None,
        min_deadline: int | None = None,
    ) -> FundingProof:
        """Check that `tx_hash` deposited at least `min_amount` wei for `job_id` to `provider` in our escrow.

        `arbiter` is the SP wallet that must be able to settle (None skips the check: only for callers
        that cannot know it). `min_deadline` (unix seconds) is the earliest acceptable payer-refund
        deadline: the payer must not be able to take the money back while the job may still run.

        Raises PaymentRejected with, in the order checked: malformed tx hash, chain unreachable, wrong chain,
        unknown tx, reverted, too few confirmations (also a reorg), not funded (no Funded log at all),
        wrong contract (Funded only from another address), wrong job, wrong provider, wrong arbiter,
        underpaid, then the escrow's state now (released, refunded or not funded), deadline too soon.
        """
        tx = normalise_tx_hash(tx_hash)
        w3 = self.w3
        chain_id = await self._rpc(w3.eth.chain_id)
        if chain_id != self.chain_id:
            raise PaymentRejected(Reason.WRONG_CHAIN, f"the node is on chain {chain_id}, expected {self.chain_id}")
        receipt = await self._rpc(w3.eth.get_transaction_receipt(tx))  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise PaymentRejected(Reason.REVERTED, f"the transaction failed in block {receipt['blockNumber']}")
        height = receipt["blockNumber"]
        confirmations = await self._rpc(w3.eth.block_number) - height + 1
        if confirmations < self.required_confirmations:
            raise PaymentRejected(
                Reason.TOO_FEW_CONFIRMATIONS, f"{confirmations} of {self.required_confirmations} confirmations"
            )
        block = await self._rpc(w3.eth.get_block(height))
        if block.get("hash") != receipt["blockHash"]:
            raise PaymentRejected(Reason.TOO_FEW_CONFIRMATIONS, f"block {height} changed (reorg)")

        key = escrow_job_id(job_id)
        payer, paid_to, arbiter_of, amount = self._funded_log(receipt["logs"], key)
        if not _same_address(paid_to, provider):
            raise PaymentRejected(Reason.WRONG_PROVIDER, f"pays {paid_to}, expected {provider}")
        if arbiter is not None and not _same_address(arbiter_of, arbiter):
            raise PaymentRejected(Reason.WRONG_ARBITER, f"arbiter {arbiter_of}, expected {arbiter}")
        if amount < min_amount:
            raise PaymentRejected(Reason.UNDERPAID, f"deposited {amount} wei, the quote is {min_amount} wei")

        now = await self._rpc(self._escrow.functions.escrows(key).call(block_identifier="latest"))
        state, deadline = EscrowState(now[5]), int(now[4])
        if state is EscrowState.RELEASED:
            raise PaymentRejected(Reason.RELEASED, "the escrow was already paid out")
        if state is EscrowState.REFUNDED:
            raise PaymentRejected(Reason.REFUNDED, "the escrow was refunded")
        if state is not EscrowState.FUNDED:
            raise PaymentRejected(Reason.NOT_FUNDED, "the escrow holds nothing for this job now")
        if min_deadline is not None and deadline < min_deadline:
            raise PaymentRejected(
                Reason.DEADLINE_TOO_SOON, f"the payer may refund from {deadline}, before {min_deadline}"
            )
        return FundingProof(
            tx_hash=tx,
            job_id=job_id,
            escrow_job_id="0x" + key.hex(),
            escrow_address=self.escrow_address,
            chain_id=chain_id,
            payer=w3.to_checksum_address(payer),
            provider=w3.to_checksum_address(paid_to),
            arbiter=w3.to_checksum_address(arbiter_of),
            amount=amount,
            deadline=deadline,
            block_number=height,
            block_hash="0x" + bytes(receipt["blockHash"]).hex(),
            confirmations=confirmations,
        )

    def _funded_log(self, logs: Any, key: bytes) -> tuple[str, str, str, int]:
        """(payer, provider, arbiter, amount) of the escrow's Funded log for `key` among a receipt's logs.

        Only logs emitted by the configured escrow address count: web3's `process_receipt` would also
        decode a look-alike event from any other contract.
        """
        from eth_abi.abi import decode
        from eth_abi.exceptions import DecodingError

        topic = funded_topic()
        funded = [log for log in logs if log["topics"] and bytes(log["topics"][0]) == topic]
        ours = [log for log in funded if _same_address(log["address"], self.escrow_address)]
        if not funded:
            raise PaymentRejected(Reason.NOT_FUNDED, "the transaction made no escrow deposit")
        if not ours:
            raise PaymentRejected(Reason.WRONG_CONTRACT, f"the deposit was not made to {self.escrow_address}")
        for log in ours:
            if len(log["topics"]) == 2 and bytes(log["topics"][1]) == key:
                try:
                    payer, provider, arbiter, amount = decode(FUNDED_DATA_TYPES, bytes(log["data"]))
                except DecodingError as e:  # cannot happen with our contract; never trust it though
                    raise PaymentRejected(Reason.WRONG_CONTRACT, "undecodable Funded log") from e
                return str(payer), str(provider), str(arbiter), int(amount)
        raise PaymentRejected(Reason.WRONG_JOB, f"the deposit is for another job than 0x{key.hex()}")

    async def wait_for_funding(
        self,
        tx_hash: str,
        job_id: str,
        provider: str,
        min_amount: int,
        *,
        arbiter: str | None,
        min_deadline: int | None = None,
        timeout_s: float,
    ) -> FundingProof:
        """`verify_funding`, retried every `poll_interval_s` while the outcome may still change (unknown tx,
        too few confirmations, chain unreachable) until `timeout_s`; then PaymentRejected(payment not
        confirmed) with the last reason in `details`. Any other rejection is raised at once."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        last: PaymentRejected | None = None
        while True:
            remaining = give_up - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    return await self.verify_funding(
                        tx_hash, job_id, provider, min_amount, arbiter=arbiter, min_deadline=min_deadline
                    )
            except PaymentRejected as e:
                if not e.retryable:
                    raise
                last = e
            except TimeoutError:
                break
            await asyncio.sleep(max(0.0, min(self.poll_interval_s, give_up - loop.time())))
        detail = f"after {timeout_s:g} s: {last.reason}" if last else f"after {timeout_s:g} s"
        raise PaymentRejected(Reason.NOT_CONFIRMED, detail)
