"""A job's files on its provider: inputs fetched and laid out before the start, outputs collected after.

`<data dir>/jobs/<job id>/inputs` holds the inputs (hard links to verified blobs, read-only; mounted
read-only at `/inputs`). The blobs are pinned under the job id while it lives, so clean-up never removes
them; `release` unpins and removes the job's folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dms.artifacts.inputs import is_hash
from dms.artifacts.store import ArtifactStore
from dms.artifacts.transfer import ArtifactTransfer
from dms.artifacts.urls import UrlLimits, fetch_url
from dms.errors import DmsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputRef:
    source: str
    path: str


@dataclass
class InputFailed(DmsError):
    """An input could not be fetched or verified; the job fails before its container starts."""

    code: str = "input_failed"


class JobFiles:
    def __init__(self, store: ArtifactStore, transfer: ArtifactTransfer, root: Path, url_limits: UrlLimits) -> None:
        self._store = store
        self._transfer = transfer
        self._root = root
        self._url_limits = url_limits

    def folder(self, job_id: str) -> Path:
        return self._root / job_id

    async def prepare_inputs(self, job_id: str, inputs: Sequence[InputRef], sp_peer: str) -> Path:
        """Fetch every input (artifacts from the SP's node, URLs directly), verify, and lay them out;
        the folder to mount at /inputs. Raises InputFailed naming the input and the reason."""
        shas: list[str] = []
        for n, ref in enumerate(inputs, 1):
            try:
                if is_hash(ref.source):
                    art = await self._transfer.fetch(sp_peer, ref.source)
                else:
                    art = await fetch_url(self._store, ref.source, self._url_limits)
            except DmsError as exc:
                raise InputFailed(f"input {n} ({ref.path}) could not be fetched: {exc}") from exc
            self._store.pin(job_id, {art.sha256})
            shas.append(art.sha256)
        folder = self.folder(job_id) / "inputs"
        self._layout(folder, [(ref.path, self._store.path(sha)) for ref, sha in zip(inputs, shas, strict=True)])
        return folder

    @staticmethod
    def _layout(folder: Path, files: list[tuple[str, Path]]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for rel, blob in files:
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(blob, dest)
            except OSError:  # another file system: a copy, read-only like the blob
                shutil.copyfile(blob, dest)
                dest.chmod(0o444)

    def release(self, job_id: str) -> None:
        """Unpin the job's artifacts and remove its folder (call once the job has ended)."""
        self._store.unpin(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
