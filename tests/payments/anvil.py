"""anvil (Foundry's local Ethereum node, from npm) for tests: install once into a cache, start on a free port.

Install: `npm install @foundry-rs/anvil@VERSION` into `$DMS_TEST_CACHE/anvil-VERSION` (default
/tmp/dms-test-cache), guarded by a file lock so parallel runs install once. `DMS_ANVIL` names a binary to use
instead. Runnable as a script to pre-install (CI setup): `python -m tests.payments.anvil`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.procs import free_port

ANVIL_VERSION = "1.7.1"
NPM_PACKAGE = f"@foundry-rs/anvil@{ANVIL_VERSION}"
CHAIN_ID = 31337
READY_TIMEOUT_S = 20.0
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class AnvilError(RuntimeError):
    """anvil could not be installed or started; the message says why, with the tool's own output."""


def cache_dir() -> Path:
    return Path(os.environ.get("DMS_TEST_CACHE", "/tmp/dms-test-cache")) / f"anvil-{ANVIL_VERSION}"


def binary_in(root: Path) -> Path:
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    return root / "node_modules" / "@foundry-rs" / f"anvil-{sys.platform}-{arch}" / "bin" / "anvil"


def install() -> Path:
    """The anvil binary, installed from npm on first use. Raises AnvilError."""
    if os.environ.get("DMS_ANVIL"):
        return Path(os.environ["DMS_ANVIL"])
    root = cache_dir()
    binary = binary_in(root)
    if binary.is_file():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise AnvilError("npm is not installed: it is needed to install anvil (apt-get install npm)")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.is_file():
            cmd = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--no-save", NPM_PACKAGE]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired as e:
                raise AnvilError(f"{' '.join(cmd)} timed out") from e
            if done.returncode != 0 or not binary.is_file():
                raise AnvilError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return binary


def rpc(url: str, method: str, *params: object, timeout: float = 5.0) -> object:
    """One JSON-RPC call with the standard library (no web3), for readiness checks and test chores."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error']}")
    return reply["result"]


class Anvil:
    """A running anvil on 127.0.0.1. `stop()` ends it; use as a context manager."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        log = open(log_path, "wb")  # noqa: SIM115 (owned by the process until stop)
        self.proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(CHAIN_ID)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AnvilError(f"anvil exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError, ValueError, AnvilError):
                if int(str(rpc(self.url, "eth_chainId", timeout=1)), 16) == CHAIN_ID:
                    return
            time.sleep(0.05)
        raise AnvilError(f"anvil did not answer on {self.url} within {READY_TIMEOUT_S:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def mine(self, blocks: int = 1) -> None:
        rpc(self.url, "anvil_mine", hex(blocks))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    print(install())
