"""An in-process chain for payment tests: web3's eth-tester (py-evm), shared by a sync and an async client.

Tests drive the chain (deploy, deposit, mine, time travel) with the sync `w3`; the code under test reads it
through `aw3`, the same `AsyncWeb3` interface it uses over HTTP in production.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionFailed
from hexbytes import HexBytes
from web3 import AsyncWeb3, Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.providers.eth_tester import AsyncEthereumTesterProvider, EthereumTesterProvider
from web3.types import TxParams, TxReceipt, Wei

from dms.payments.contract import escrow_job_id, load_artifact

REVERTS = (TransactionFailed, ContractLogicError)
"""What a reverting call raises: eth-tester's error on this provider, web3's on real nodes."""
COPYCAT_SOURCE = Path(__file__).with_name("copycat.vy")


@functools.cache
def copycat_artifact() -> tuple[list[dict[str, Any]], str]:
    import vyper
    from vyper.compiler.settings import Settings

    from dms.payments.contract import EVM_VERSION

    out = vyper.compile_code(
        COPYCAT_SOURCE.read_text(), output_formats=["abi", "bytecode"], settings=Settings(evm_version=EVM_VERSION)
    )
    return out["abi"], out["bytecode"]


class LocalChain:
    """A fresh chain with ten funded, unlocked accounts."""

    def __init__(self, provider: AsyncEthereumTesterProvider | None = None) -> None:
        self.async_provider = provider or AsyncEthereumTesterProvider()
        self.tester: EthereumTester = self.async_provider.ethereum_tester
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.aw3: AsyncWeb3[Any] = AsyncWeb3(self.async_provider)
        self.accounts: list[str] = list(self.w3.eth.accounts)
        self.chain_id: int = self.w3.eth.chain_id

    def wait(self, tx_hash: HexBytes | str) -> TxReceipt:
        """The receipt of a sent transaction (its hash as bytes or as 0x-hex)."""
        return self.w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash))

    def deploy(self, abi: list[dict[str, Any]], bytecode: str, *args: Any, sender: str | None = None) -> Contract:
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        receipt = self.wait(factory.constructor(*args).transact({"from": sender or self.accounts[0]}))
        address = receipt["contractAddress"]
        assert address is not None, "a contract creation's receipt names the new contract"
        return self.w3.eth.contract(address=address, abi=abi)

    def deploy_escrow(self, refund_delay_s: int = 3600) -> Contract:
        art = load_artifact()
        return self.deploy(art.abi, art.bytecode, refund_delay_s)

    def deploy_copycat(self) -> Contract:
        return self.deploy(*copycat_artifact())

    def deposit(
        self,
        escrow: Contract,
        job_id: str,
        provider: str,
        arbiter: str,
        value: int,
        *,
        sender: str,
        gas: int | None = None,
    ) -> str:
        """Send a deposit (a reverting one is mined when `gas` is given) and return its tx hash."""
        tx: TxParams = {"from": sender, "value": Wei(value)}
        if gas is not None:
            tx["gas"] = gas
        tx_hash = escrow.functions.deposit(escrow_job_id(job_id), provider, arbiter).transact(tx)
        self.wait(tx_hash)
        return "0x" + bytes(tx_hash).hex()

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def time_travel(self, seconds: int) -> None:
        """Mine a block `seconds` after the latest one."""
        self.tester.time_travel(self.latest_timestamp() + seconds)
