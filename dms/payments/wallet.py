"""The node's own EVM key: a file in the data dir (mode 0600), created on first use.

As SP the node is the escrow's arbiter and signs releases and refunds with it, so the address needs gas.
eth-account is imported on first use only (about half a second).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from dms.payments.errors import WalletError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

KEY_FILE = "evm_key"
"""The key file's name inside `general.data_dir`: 0x and 64 hex digits, one line."""
_KEY_RE = re.compile(r"0x[0-9a-f]{64}")


class Wallet:
    """The key in `path`. `load_or_create` is the way to get one."""

    def __init__(self, path: Path, private_key: str) -> None:
        self.path = path
        self._private_key = private_key
        self._account: LocalAccount | None = None

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Wallet:
        """The wallet in `data_dir`, a new key being written (0600) when there is none.

        Raises WalletError naming the file when it cannot be read or written or holds no valid key: an
        existing key is never replaced, since funds may sit at its address. A key readable by others is
        set to 0600 with a warning (as the p2p identity is).
        """
        path = data_dir / KEY_FILE
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                cls._create(path)
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                log.warning("EVM key %s had mode %o; set to 0600", path, mode)
                path.chmod(0o600)
            text = path.read_text().strip().lower()
        except (OSError, UnicodeDecodeError) as e:
            raise WalletError(f"cannot use the EVM key {path}: {e}") from e
        if not _KEY_RE.fullmatch(text):
            raise WalletError(f"the EVM key {path} is not 0x followed by 64 hex digits")
        return cls(path, text)

    @staticmethod
    def _create(path: Path) -> None:
        """Write a new key atomically; when another process wins the race its key is kept."""
        key = "0x" + os.urandom(32).hex()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if the key appeared meanwhile: keep that one
                log.info("created EVM key %s", path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)

    def account(self) -> LocalAccount:
        """The eth-account signer for this key (imports eth-account on first call)."""
        if self._account is None:
            from eth_account import Account

            try:
                self._account = Account.from_key(self._private_key)
            except ValueError as e:  # e.g. zero or above the curve order
                raise WalletError(f"the EVM key {self.path} is not a valid secp256k1 key") from e
        return self._account

    @property
    def address(self) -> str:
        """The EIP-55 checksummed address to fund with gas."""
        return str(self.account().address)

    def __repr__(self) -> str:  # never show the key
        return f"Wallet({self.path})"
