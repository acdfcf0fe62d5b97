"""Ethereum key pairs and addresses. eth-account is imported on first use: it costs ~0.5 s at import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyPair:
    address: str
    private_key: str


def new_key_pair() -> KeyPair:
    from eth_account import Account

    acct = Account.create()
    return KeyPair(address=acct.address, private_key="0x" + acct.key.hex().removeprefix("0x"))


def address_problem(address: str) -> str | None:
    """Why `address` is not a usable EIP-55 checksummed address, or None when it is."""
    from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address

    if not is_hex_address(address):
        return "not an Ethereum address (0x followed by 40 hex digits)"
    if not is_checksum_address(address):
        return f"not EIP-55 checksummed; the checksummed form is {to_checksum_address(address)}"
    return None
