"""Errors of the artifact store and its transfers. Each message is one line a user can act on."""

from __future__ import annotations

from dataclasses import dataclass

from dms.errors import DmsError, InvalidInput, NotFound


@dataclass
class BadHash(InvalidInput):
    """Not a sha256: 64 hex digits."""

    code: str = "invalid_sha256"


@dataclass
class ArtifactNotFound(NotFound):
    code: str = "artifact_not_found"


@dataclass
class ArtifactTooLarge(DmsError):
    """Over the size limit of an upload, a download, or an input."""

    code: str = "artifact_too_large"


@dataclass
class QuotaExceeded(DmsError):
    """The store cannot make room: what is left is pinned by live jobs, or the quota is smaller."""

    code: str = "artifact_quota_exceeded"


@dataclass
class ArtifactCorrupt(DmsError):
    """The bytes a peer sent do not hash to the name asked for; nothing was kept."""

    code: str = "artifact_corrupt"


@dataclass
class TransferFailed(DmsError):
    """A transfer from a peer could not complete (unreachable, refused, stalled past its retries)."""

    code: str = "artifact_transfer_failed"
