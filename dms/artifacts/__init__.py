"""Artifacts: immutable blobs named by their sha256, the store, clean-up, and transfers between nodes.

Job inputs, outputs and checkpoints are all artifacts. Nothing here imports aiohttp or libp2p: the web
layer and the network layer are handed in.
"""

from dms.artifacts.errors import (
    ArtifactCorrupt,
    ArtifactNotFound,
    ArtifactTooLarge,
    BadHash,
    QuotaExceeded,
    TransferFailed,
)
from dms.artifacts.store import Artifact, ArtifactStore, StoreLimits, check_hash
from dms.artifacts.transfer import PROTOCOL, ArtifactTransfer, TransferStats

__all__ = [
    "PROTOCOL",
    "Artifact",
    "ArtifactCorrupt",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactTooLarge",
    "ArtifactTransfer",
    "BadHash",
    "QuotaExceeded",
    "StoreLimits",
    "TransferFailed",
    "TransferStats",
    "check_hash",
]
