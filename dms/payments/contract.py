"""The escrow contract as data: where its source and artifact live, its states, the job id it keys on.

Nothing here imports web3 (it costs seconds at import); only the tiny keccak backend is imported, on use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE_PATH = HERE / "escrow.vy"
ARTIFACT_PATH = HERE / "escrow.json"
EVM_VERSION = "cancun"
"""The EVM the bytecode targets (PUSH0, MCOPY, transient storage): anvil, py-evm and mainnet-like chains run it."""

FUNDED_EVENT = "Funded(bytes32,address,address,address,uint256)"
FUNDED_DATA_TYPES = ("address", "address", "address", "uint256")
"""The non-indexed fields of `Funded`, in order: payer, provider, arbiter, amount (job_id is topic 1)."""


class EscrowState(IntEnum):
    """What `state(job_id)` returns."""

    NONE = 0
    FUNDED = 1
    RELEASED = 2
    REFUNDED = 3


@dataclass(frozen=True)
class Artifact:
    """The committed compile of `escrow.vy`."""

    abi: list[dict[str, Any]]
    bytecode: str
    compiler: str


@cache
def load_artifact() -> Artifact:
    """Read `escrow.json` (shipped beside this module). Raises OSError or ValueError when it is missing or broken."""
    data = json.loads(ARTIFACT_PATH.read_text())
    return Artifact(abi=data["abi"], bytecode=data["bytecode"], compiler=data["compiler"])


def keccak256(data: bytes) -> bytes:
    from eth_hash.auto import keccak

    return keccak(data)


def escrow_job_id(job_id: str) -> bytes:
    """The bytes32 the escrow keys a job on: keccak256 of the job id's UTF-8 bytes."""
    return keccak256(job_id.encode("utf-8"))


def run_key(job_id: str, run: int) -> str:
    """The name one run of a job is paid under (its escrow job id is `escrow_job_id` of it): the job id for
    the first run, `<job id>/run<N>` for a run that resumed it after its provider was lost (the contract
    takes one deposit per id, so each run has its own)."""
    return job_id if run <= 1 else f"{job_id}/run{run}"


def escrow_job_id_hex(job_id: str) -> str:
    """`escrow_job_id` as the quote shows it: 0x and 64 lower-case hex digits."""
    return "0x" + escrow_job_id(job_id).hex()


def funded_topic() -> bytes:
    """Topic 0 of a `Funded` log: the keccak256 of the event's signature."""
    return keccak256(FUNDED_EVENT.encode())
