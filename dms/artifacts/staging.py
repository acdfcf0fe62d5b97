"""A job's files on its provider: inputs fetched and laid out before the start, outputs collected after.

`<data dir>/jobs/<job id>/inputs` holds the inputs (hard links to verified blobs, read-only; mounted
read-only at `/inputs`). The blobs are pinned under the job id while it lives, so clean-up never removes
them; `release` unpins and removes the job's folder.

`<data dir>/jobs/<job id>/outputs` is mounted writable at `/outputs`. A bind mount has no size bound of
its own on ext4, so `watch_outputs` measures it while the job runs and calls back once it is over the
limit (the provider stops the job), and `collect_outputs` refuses to store more than the limit. The
folder's contents become one tar artifact.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tarfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dms.artifacts.inputs import is_hash
from dms.artifacts.store import Artifact, ArtifactStore
from dms.artifacts.tarball import UnsafeTar, extract
from dms.artifacts.transfer import ArtifactTransfer
from dms.artifacts.urls import UrlLimits, fetch_url
from dms.errors import DmsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputRef:
    source: str
    path: str


WATCH_EVERY_S = 0.5


@dataclass
class OutputsTooLarge(DmsError):
    """The job left more in /outputs than the provider keeps."""

    code: str = "outputs_too_large"


@dataclass
class InputFailed(DmsError):
    """An input could not be fetched or verified; the job fails before its container starts."""

    code: str = "input_failed"


class JobFiles:
    def __init__(
        self, store: ArtifactStore, transfer: ArtifactTransfer, root: Path, url_limits: UrlLimits, outputs_max: int
    ) -> None:
        self._store = store
        self._transfer = transfer
        self._root = root
        self._url_limits = url_limits
        self.outputs_max = outputs_max

    def clear(self, keep: frozenset[str] = frozenset()) -> None:
        """Remove every job folder but those of the jobs in `keep` (adopted after a restart: their containers
        still run with them): call at start-up, before any new job runs (leftovers of a crash)."""
        if self._root.exists():
            for leftover in self._root.iterdir():
                if leftover.name not in keep:
                    shutil.rmtree(leftover, ignore_errors=True)

    def pin(self, job_id: str, shas: set[str]) -> None:
        """Hold these blobs for the job until it ends (an adopted job's inputs and restored checkpoint)."""
        self._store.pin(job_id, shas)

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

    def prepare_outputs(self, job_id: str) -> Path:
        """An empty folder for the job's `/outputs`, writable by the container's user whoever runs dms."""
        folder = self.folder(job_id) / "outputs"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        folder.chmod(0o777)  # the container's root has no CAP_DAC_OVERRIDE and may not be our uid
        return folder

    async def watch_outputs(self, job_id: str, on_over: Callable[[], Awaitable[None]]) -> None:
        """Measure the job's /outputs until cancelled; await `on_over` once when it passes the limit (its
        /workspace, where checkpoints come from, is bounded by its own disk)."""
        folder = self.folder(job_id)
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            used = await asyncio.to_thread(_du, folder / "outputs", self.outputs_max)
            if used > self.outputs_max:
                log.info("job %s: its files passed the limit of %d bytes; stopping it", job_id, self.outputs_max)
                await on_over()
                return

    async def collect_outputs(self, job_id: str) -> Artifact | None:
        """The job's /outputs as one tar artifact (None when it left nothing). Raises OutputsTooLarge."""
        return await self._pack(self.folder(job_id) / "outputs", "/outputs")

    def prepare_checkpoint(self, job_id: str, name: str = "checkpoint") -> Path:
        """An empty folder for the job's checkpoints (see dms.artifacts.checkpoints)."""
        folder = self.folder(job_id) / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        folder.chmod(0o777)
        return folder

    async def restore(self, job_id: str, sha256: str, sp_peer: str) -> None:
        """Unpack checkpoint `sha256` (fetched from the SP's node, verified) into the job's checkpoint folder,
        writable by the job. Raises InputFailed."""
        try:
            art = await self._transfer.fetch(sp_peer, sha256)
            self._store.pin(job_id, {art.sha256})
            await asyncio.to_thread(_unpack, self._store.path(art.sha256), self.folder(job_id) / "checkpoint")
        except (DmsError, UnsafeTar, tarfile.TarError, OSError) as exc:
            raise InputFailed(f"checkpoint {sha256} could not be restored: {exc}") from exc

    async def snapshot(self, job_id: str, dump: Callable[[Path], Awaitable[None]] | None) -> Artifact | None:
        """A checkpoint as a tar artifact (None while empty): with `dump`, of the checkpoint folder refilled by
        it (a copy of the running job's disk); without, of the `final` folder (the ended job's disk, copied
        there by the executor). Raises OutputsTooLarge, and what `dump` raises."""
        folder = self.folder(job_id) / ("checkpoint" if dump is not None else "final")
        if dump is not None:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            folder.mkdir(parents=True)
            await dump(folder)
        return await self._pack(folder, "the checkpoint path")

    async def _pack(self, folder: Path, what: str) -> Artifact | None:
        used = await asyncio.to_thread(_du, folder, self.outputs_max)
        if used == 0:
            return None
        if used > self.outputs_max:
            raise OutputsTooLarge(f"the job left more than {self.outputs_max} bytes in {what}; nothing was kept")
        tmp = self._store.new_temp()
        try:
            await asyncio.to_thread(_tar, folder, tmp)
            sha, size = await asyncio.to_thread(_hash, tmp)
            return await self._store.adopt(tmp, sha, size)
        finally:
            self._store.discard(tmp)

    def release(self, job_id: str) -> None:
        """Unpin the job's artifacts and remove its folder (call once the job has ended)."""
        self._store.unpin(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)


def _unpack(tar_path: Path, folder: Path) -> None:
    extract(tar_path, folder)
    for dirpath, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o777)
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666)


def _du(folder: Path, stop_over: int) -> int:
    """Bytes in regular files under `folder` (symlinks not followed); stops counting past `stop_over`."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += max(st.st_size, st.st_blocks * 512)
            if total > stop_over:
                return total
    return total


def _tar(folder: Path, dest: Path) -> None:
    """`folder`'s contents as a tar, sorted, owners cleared; links are stored as links, never followed."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isfile() or info.isdir() or info.issym()):
            return None  # devices, fifos: not outputs
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(dest, "w") as tar:
        for path in _walk(folder):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False, filter=clean)


def _walk(folder: Path) -> list[Path]:
    """Everything under `folder`, parents before children, in name order; symlinked folders not entered."""
    out: list[Path] = []
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(dirpath)
        out += [base / d for d in dirs] + [base / f for f in sorted(files)]
    return sorted(out, key=lambda p: p.relative_to(folder).parts)


def _hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
