"""The node's EVM key file, and the promise that payments cost nothing at start when they are off."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dms.payments.errors import WalletError
from dms.payments.wallet import KEY_FILE, Wallet

REPO = Path(__file__).resolve().parents[2]


def test_created_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    wallet = Wallet.load_or_create(data_dir)
    key_file = data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    text = key_file.read_text()
    assert text.startswith("0x") and len(text.strip()) == 66
    assert wallet.address.startswith("0x") and len(wallet.address) == 42
    assert wallet.address != wallet.address.lower()  # EIP-55 checksummed
    assert Wallet.load_or_create(data_dir).address == wallet.address
    assert key_file.read_text() == text
    assert text.strip() not in repr(wallet)


def test_the_address_signs_for_the_key(tmp_path: Path) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    wallet = Wallet.load_or_create(tmp_path)
    signed = wallet.account().sign_message(encode_defunct(text="dms"))
    assert Account.recover_message(encode_defunct(text="dms"), signature=signed.signature) == wallet.address


def test_a_key_readable_by_others_is_tightened(tmp_path: Path) -> None:
    address = Wallet.load_or_create(tmp_path).address
    (tmp_path / KEY_FILE).chmod(0o644)
    assert Wallet.load_or_create(tmp_path).address == address
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["", "not a key\n", "0x" + "zz" * 32, "0x" + "00" * 32])
def test_a_broken_key_is_an_error_and_never_replaced(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / KEY_FILE
    key_file.write_text(content)
    key_file.chmod(0o600)
    with pytest.raises(WalletError, match=str(key_file)):
        Wallet.load_or_create(tmp_path).account()
    assert key_file.read_text() == content


def test_an_unwritable_data_dir_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WalletError, match="cannot use the EVM key"):
        Wallet.load_or_create(blocker / "data")


def test_payments_modules_import_neither_web3_nor_eth_account() -> None:
    """The daemon imports these with payments off; web3 costs seconds, eth-account half of one."""
    code = (
        "import sys\n"
        "import dms.payments.chain, dms.payments.contract, dms.payments.errors, dms.payments.settle\n"
        "import dms.payments.verify, dms.payments.wallet\n"
        "from dms.payments.contract import escrow_job_id_hex\n"
        "escrow_job_id_hex('x')\n"
        "heavy = ('web3', 'eth_account', 'eth_abi', 'vyper', 'eth_tester', 'eth')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_job_id_hash_is_keccak256_of_utf8() -> None:
    from dms.payments.contract import escrow_job_id_hex

    # keccak256("") and keccak256("hello") as every Ethereum tool prints them.
    assert escrow_job_id_hex("") == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert escrow_job_id_hex("hello") == "0x1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8"
