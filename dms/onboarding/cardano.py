"""Cardano payout addresses and wallets (CIP-19 addresses, CIP-1852 derivation), on bip-utils.

bip-utils is imported on first use only (about 0.2 s, and only `address/new?blockchain=cardano` and
address checks need it). Only payment addresses are accepted as payout addresses: base (a payment key
or script with a stake part) and enterprise (payment part only), on mainnet (`addr`) or a testnet
(`addr_test`). Pointer, stake (`stake…`) and Byron (base58) addresses are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_TYPES = range(0, 4)  # header types 0-3: key/script payment part with a key/script stake part
ENTERPRISE_TYPES = range(6, 8)  # 6-7: payment part only
NETWORK_OF_HRP = {"addr": 1, "addr_test": 0}
LENGTHS = {"base": 57, "enterprise": 29}


@dataclass(frozen=True)
class CardanoWallet:
    address: str
    mnemonic: str


def looks_cardano(address: str) -> bool:
    """Whether the text is meant as a Cardano address (so its problem is reported as one)."""
    low = address.lower()
    return low.startswith(("addr", "stake")) or (not low.startswith("0x") and len(address) > 50)


def address_problem(address: str) -> str | None:
    """Why `address` is not a Cardano payment address (base or enterprise), or None when it is one."""
    from bip_utils.bech32 import Bech32ChecksumError, Bech32Decoder

    if address.lower().startswith("stake"):
        return "a Cardano stake address cannot receive payouts; give a payment address (addr1… or addr_test1…)"
    hrp = address.lower().split("1", 1)[0]
    if hrp not in NETWORK_OF_HRP:
        return "not a Cardano payment address (bech32 starting addr1… or addr_test1…; Byron addresses are refused)"
    try:
        data = Bech32Decoder.Decode(hrp, address)
    except Bech32ChecksumError:
        return "not a valid Cardano address: its bech32 checksum is wrong (a typo?)"
    except Exception as exc:  # bip-utils raises ValueError or its own errors for malformed text
        return f"not a valid Cardano address: {exc}"
    if not data:
        return "not a valid Cardano address: no data"
    kind, network = data[0] >> 4, data[0] & 0x0F
    if network != NETWORK_OF_HRP[hrp]:
        return f"the address's network id ({network}) does not match its prefix {hrp!r}"
    if kind in BASE_TYPES:
        name = "base"
    elif kind in ENTERPRISE_TYPES:
        name = "enterprise"
    else:
        return (
            f"a Cardano address of type {kind} (pointer, reward or other) cannot receive payouts; "
            "give a base or enterprise address"
        )
    if len(data) != LENGTHS[name]:
        return f"not a valid Cardano {name} address: {len(data)} bytes, expected {LENGTHS[name]}"
    return None


def new_wallet(mainnet: bool = True) -> CardanoWallet:
    """A fresh 24-word mnemonic and its first base address (m/1852'/1815'/0'/0/0 with stake key …/2/0)."""
    from bip_utils import (
        Bip39MnemonicGenerator,
        Bip39WordsNum,
        Bip44Changes,
        CardanoIcarusSeedGenerator,
        CardanoShelley,
        Cip1852,
        Cip1852Coins,
    )

    mnemonic = Bip39MnemonicGenerator().FromWordsNumber(Bip39WordsNum.WORDS_NUM_24)
    seed = CardanoIcarusSeedGenerator(mnemonic).Generate()
    coin = Cip1852Coins.CARDANO_ICARUS if mainnet else Cip1852Coins.CARDANO_ICARUS_TESTNET
    account = Cip1852.FromSeed(seed, coin).Purpose().Coin().Account(0)
    first = CardanoShelley.FromCip1852Object(account).Change(Bip44Changes.CHAIN_EXT).AddressIndex(0)
    return CardanoWallet(address=first.PublicKeys().ToAddress(), mnemonic=mnemonic.ToStr())
