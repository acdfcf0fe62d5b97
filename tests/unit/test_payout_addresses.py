"""Payout addresses as NuNet's clients give them: Ethereum (checksummed or all lower case) or a Cardano
payment address (bech32, base or enterprise, mainnet or testnet); and escrow only for Ethereum ones."""

from __future__ import annotations

import dataclasses

import pytest
from bip_utils.bech32 import Bech32Decoder, Bech32Encoder

from dms.matching import Candidate, Needs, place
from dms.onboarding import cardano, wallet

ETH = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
# A base address from CIP-19's test vectors (mainnet, key hash payment and stake parts).
CIP19_BASE = "addr1qx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzer3n0d3vllmyqwsx5wktcd8cc3sq835lu7drv2xwl2wywfgse35a3x"
CIP19_ENTERPRISE = "addr1vx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzers66hrl8"
CIP19_POINTER = "addr1gx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzer5pnz75xxcrzqf96k"
CIP19_STAKE = "stake1uyehkck0lajq8gr28t9uxnuvgcqrc6070x3k9r8048z8y5gh6ffgw"
CIP19_TEST_BASE = (
    "addr_test1qz2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzer3n0d3vllmyqwsx5wktcd8cc3sq835lu7drv2xwl2wywfgs68faae"
)
BYRON = "Ae2tdPwUPEZFRbyhz3cpfC2CumGzNkFBN2L42rcUc2yjQpEkxDbkPodpMAi"


@pytest.mark.parametrize("addr", [ETH, ETH.lower(), CIP19_BASE, CIP19_ENTERPRISE, CIP19_TEST_BASE])
def test_payout_addresses_accepted(addr: str) -> None:
    assert wallet.payout_problem(addr) is None


@pytest.mark.parametrize(
    ("addr", "says"),
    [
        (ETH[:-1] + "D", "checksum"),  # mixed case, one letter changed: a typo
        ("0x1234", "0x followed by 40 hex"),
        (CIP19_BASE[:-1] + ("q" if CIP19_BASE[-1] != "q" else "p"), "checksum"),
        (CIP19_POINTER, "type 4"),
        (CIP19_STAKE, "stake address"),
        (BYRON, "Byron"),
        ("addr1notbech32", "not a valid Cardano address"),
    ],
)
def test_payout_addresses_refused(addr: str, says: str) -> None:
    problem = wallet.payout_problem(addr)
    assert problem is not None and says in problem, problem


def test_network_id_must_match_the_prefix() -> None:
    data = Bech32Decoder.Decode("addr", CIP19_BASE)
    swapped = Bech32Encoder.Encode("addr_test", data)  # mainnet header under the testnet prefix
    problem = cardano.address_problem(swapped)
    assert problem is not None and "network id" in problem


def test_ethereum_addresses_are_stored_checksummed() -> None:
    assert wallet.normal_payout(ETH.lower()) == ETH
    assert wallet.normal_payout(CIP19_BASE) == CIP19_BASE


def test_new_cardano_wallet_is_24_words_and_a_base_address() -> None:
    made = cardano.new_wallet()
    assert len(made.mnemonic.split()) == 24
    assert made.address.startswith("addr1q")  # header 0x01: base address, key hashes, mainnet
    assert cardano.address_problem(made.address) is None
    assert cardano.new_wallet().address != made.address


def test_cip1852_payment_key_of_cip19s_mnemonic() -> None:
    """CIP-19's test vectors come from `test walk nut … choice`; the payment key at m/1852'/1815'/0'/0/0
    that dms's derivation gives must be the one in CIP-19's base address (header and payment hash)."""
    from bip_utils import Bip44Changes, CardanoIcarusSeedGenerator, CardanoShelley, Cip1852, Cip1852Coins

    seed = CardanoIcarusSeedGenerator(
        "test walk nut penalty hip pave soap entry language right filter choice"
    ).Generate()
    acc = Cip1852.FromSeed(seed, Cip1852Coins.CARDANO_ICARUS).Purpose().Coin().Account(0)
    addr = CardanoShelley.FromCip1852Object(acc).Change(Bip44Changes.CHAIN_EXT).AddressIndex(0).PublicKeys().ToAddress()
    ours, cip19 = Bech32Decoder.Decode("addr", addr), Bech32Decoder.Decode("addr", CIP19_BASE)
    assert ours[:29] == cip19[:29] and len(ours) == 57


def test_escrow_jobs_go_only_to_ethereum_paid_providers() -> None:
    base = Candidate(
        peer_id="eth", channel="nunet-test", available=True, cpu_mhz=4000, cores=4, memory_mb=8000, gpus=(),
        ntx_price=1000, executors=("docker",), rtt_s=0.01, payment_addr=ETH,
    )  # fmt: skip
    ada = dataclasses.replace(base, peer_id="ada", payment_addr=CIP19_BASE)
    needs = Needs(channel="nunet-test", cpu_mhz=1000, cores=1, memory_mb=512, duration_s=60, max_price=10**18)
    assert [r.candidate.peer_id for r in place([base, ada], needs).ranked] == ["ada", "eth"]
    escrow = place([base, ada], dataclasses.replace(needs, escrow=True))
    assert [r.candidate.peer_id for r in escrow.ranked] == ["eth"]
    assert "ada" in escrow.explain() and "Ethereum" in escrow.explain()
