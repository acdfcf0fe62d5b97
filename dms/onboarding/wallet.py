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
    """Why `address` is not a usable Ethereum address, or None when it is.

    EIP-55 checksummed, or all lower case (no checksum to check, as wallets print it); mixed case with a
    wrong checksum is refused, since it is most likely a typo.
    """
    from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address

    if not is_hex_address(address):
        return "not an Ethereum address (0x followed by 40 hex digits)"
    digits = address[2:]
    if digits != digits.lower() and not is_checksum_address(address):
        return f"its EIP-55 checksum is wrong (a typo?); the checksummed form is {to_checksum_address(address)}"
    return None


def is_evm_address(address: str) -> bool:
    """Cheap shape test (no checksum): can this payout address receive an EVM escrow release?"""
    return len(address) == 42 and address[:2].lower() == "0x"


def payout_problem(address: str) -> str | None:
    """Why `address` cannot receive payouts: an Ethereum address or a Cardano payment address is needed."""
    from dms.onboarding import cardano

    if cardano.looks_cardano(address):
        return cardano.address_problem(address)
    return address_problem(address)


def normal_payout(address: str) -> str:
    """The stored form of a valid payout address: Ethereum checksummed, Cardano as given (bech32 is lower case)."""
    if is_evm_address(address):
        from eth_utils.address import to_checksum_address

        return str(to_checksum_address(address))
    return address.lower()
