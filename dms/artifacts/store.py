"""Immutable blobs named by their sha256, under `<data dir>/artifacts`.

Layout: `blobs/<sha256>` (complete, verified, read-only), `tmp/` (uploads being written, hashed while
they stream, renamed into `blobs/` only once the hash is known), `partial/<sha256>` (a transfer from a
peer under way: never served, never mounted; kept so a dropped transfer resumes at its offset).

The store is the only writer of its folders. It keeps an index (size, last use) in memory, rebuilt from
the disk at start. Pins (holder → hashes) protect what live jobs need from clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path

from dms.artifacts.cleanup import BlobInfo, fits, plan_cleanup
from dms.artifacts.errors import ArtifactNotFound, ArtifactTooLarge, BadHash, QuotaExceeded

log = logging.getLogger(__name__)

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_hash(value: str) -> str:
    """The hash in lower case; BadHash when it is not 64 hex digits."""
    h = value.strip().lower()
    if not SHA256.match(h):
        raise BadHash(f"{value[:80]!r} is not a sha256 (64 hex digits)")
    return h


@dataclass(frozen=True)
class Artifact:
    sha256: str
    size: int


@dataclass(frozen=True)
class StoreLimits:
    quota: int
    """Bytes the store may hold in all."""
    max_age_s: float
    """A blob unused for longer is removed at the next clean-up (unless pinned)."""


class ArtifactStore:
    def __init__(self, root: Path, limits: StoreLimits, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.limits = limits
        self._clock = clock
        self._blobs: dict[str, BlobInfo] = {}
        self._pins: dict[str, frozenset[str]] = {}
        self._lock = asyncio.Lock()

    # --- lifecycle ---

    def open(self) -> None:
        """Create the folders, drop leftover uploads, and index the blobs on disk."""
        for sub in ("blobs", "tmp", "partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "tmp").iterdir():
            leftover.unlink(missing_ok=True)
        for f in (self.root / "blobs").iterdir():
            if SHA256.match(f.name) and f.is_file():
                st = f.stat()
                self._blobs[f.name] = BlobInfo(st.st_size, st.st_mtime)

    # --- reading ---

    def get(self, sha256: str) -> Artifact | None:
        info = self._blobs.get(sha256)
        return Artifact(sha256, info.size) if info else None

    def path(self, sha256: str) -> Path:
        """The blob's file (read-only). Raises BadHash, ArtifactNotFound. Counts as a use."""
        h = check_hash(sha256)
        info = self._blobs.get(h)
        if info is None:
            raise ArtifactNotFound(f"no artifact {h} on this node")
        now = self._clock()
        self._blobs[h] = BlobInfo(info.size, now)
        p = self.root / "blobs" / h
        with contextlib.suppress(OSError):
            os.utime(p, (now, now))
        return p

    def all(self) -> list[Artifact]:
        return [Artifact(h, b.size) for h, b in sorted(self._blobs.items(), key=lambda kv: -kv[1].last_used)]

    @property
    def used(self) -> int:
        return sum(b.size for b in self._blobs.values())

    # --- pins ---

    def pin(self, holder: str, hashes: set[str]) -> None:
        """Protect `hashes` from clean-up until `unpin(holder)` (a holder is a job id or a transfer)."""
        self._pins[holder] = self._pins.get(holder, frozenset()) | frozenset(hashes)

    def unpin(self, holder: str) -> None:
        self._pins.pop(holder, None)

    def pinned(self) -> frozenset[str]:
        return frozenset().union(*self._pins.values()) if self._pins else frozenset()

    # --- writing ---

    async def put(self, chunks: AsyncIterable[bytes], max_size: int) -> Artifact:
        """Store a stream of bytes; its sha256 and size. Raises ArtifactTooLarge past `max_size`,
        QuotaExceeded when the store cannot make room. Nothing is kept after an error."""
        limit = min(max_size, self.limits.quota)
        digest = hashlib.sha256()
        size = 0
        fd, name = _tempfile(self.root / "tmp")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise ArtifactTooLarge(_too_large(limit, max_size, self.limits.quota))
                    digest.update(chunk)
                    f.write(chunk)
            return await self.adopt(tmp, digest.hexdigest(), size)
        finally:
            _discard(tmp)

    async def adopt(self, src: Path, sha256: str, size: int) -> Artifact:
        """Move a file whose hash the caller computed over its whole content into the store."""
        async with self._lock:
            return self._adopt(src, sha256, size)

    def _adopt(self, src: Path, sha256: str, size: int) -> Artifact:
        if sha256 in self._blobs:
            _discard(src)
            self.path(sha256)  # a new use
            return Artifact(sha256, size)
        self._make_room(size)
        dest = self.root / "blobs" / sha256
        os.chmod(src, 0o444)
        os.replace(src, dest)
        now = self._clock()
        os.utime(dest, (now, now))
        self._blobs[sha256] = BlobInfo(size, now)
        return Artifact(sha256, size)

    def new_temp(self) -> Path:
        """A new empty file in the store's temp folder (the caller fills it, then `adopt`s or `discard`s it)."""
        fd, name = _tempfile(self.root / "tmp")
        os.close(fd)
        return Path(name)

    @staticmethod
    def discard(path: Path) -> None:
        path.unlink(missing_ok=True)

    def partial_path(self, sha256: str) -> Path:
        return self.root / "partial" / check_hash(sha256)

    def check_room(self, size: int) -> None:
        """QuotaExceeded when `size` bytes could not fit even after removing everything unpinned."""
        if not fits(self._blobs, self.pinned(), self.limits.quota, size):
            raise QuotaExceeded(
                f"the artifact store cannot make room for {size} bytes (quota {self.limits.quota} bytes; "
                f"{self.used} in use, some pinned by live jobs)"
            )

    def _make_room(self, need: int) -> None:
        self.check_room(need)
        self._remove(plan_cleanup(
            self._blobs, self.pinned(), now=self._clock(), max_age_s=self.limits.max_age_s,
            quota=self.limits.quota, need=need,
        ))  # fmt: skip

    async def clean(self) -> list[str]:
        """Remove expired blobs, and the least recently used while over quota; what was removed."""
        async with self._lock:
            gone = plan_cleanup(
                self._blobs, self.pinned(), now=self._clock(), max_age_s=self.limits.max_age_s,
                quota=self.limits.quota,
            )  # fmt: skip
            self._remove(gone)
        return gone

    async def clean_forever(self, every_s: float) -> None:
        """`clean()` now and every `every_s` seconds, until cancelled; errors are logged, not raised."""
        while True:
            try:
                await self.clean()
            except OSError as exc:
                log.warning("artifact clean-up failed: %s", exc)
            await asyncio.sleep(every_s)

    def _remove(self, hashes: list[str]) -> None:
        for h in hashes:
            (self.root / "blobs" / h).unlink(missing_ok=True)
            self._blobs.pop(h, None)
            log.info("artifact %s removed by clean-up", h)


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _tempfile(folder: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=folder, prefix="up-")


def _too_large(limit: int, max_size: int, quota: int) -> str:
    what = "the size limit" if max_size <= quota else "the store's quota"
    return f"the artifact is larger than {what} ({limit} bytes)"
