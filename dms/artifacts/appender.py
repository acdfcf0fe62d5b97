"""Appending a blob's bytes to its partial file as they arrive, past the page cache where that is allowed.

Why: a blob arrives once, is hashed on the way in, and is read again only when a job mounts it, so its pages
in the page cache buy little; and on the virtual machines this project runs on, new page-cache memory is
dear: a new 32 MiB file took 90 to 900 ms to write through the page cache and 20 to 48 ms with O_DIRECT
(docs/artifacts.md, "Transfer speed"). O_DIRECT needs the file offset, the length and the buffer's address
aligned to the file system's block (ALIGN covers the usual 512 and 4096); the direct path's frame buffers are
page-aligned maps of whole MiBs, so every frame but the last goes straight to the disk. Whatever is not
aligned (a resumed file's odd end, the last frame's tail, a buffer from elsewhere, a file system that refuses
O_DIRECT) goes through the page cache as before. Both write the same file at explicit offsets.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

ALIGN = 4096


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class Appender:
    """Appends to a file (created if absent) at explicit offsets from its end at opening; `write` takes any
    bytes-like object. One writer at a time (the transfer holds the artifact's lock). After a failed write
    every later one fails too, so the file is always a prefix of what was given, never one with a hole."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._offset = os.fstat(self._fd).st_size
        self._direct: int | None = None
        self._failed: OSError | None = None
        if hasattr(os, "O_DIRECT"):
            try:
                self._direct = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError:  # EINVAL: the file system has no O_DIRECT
                self._direct = None

    @property
    def direct(self) -> bool:
        """Whether aligned writes still bypass the page cache (False once the file system refused one)."""
        return self._direct is not None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._failed is not None:
            raise OSError(self._failed.errno, f"an earlier write failed: {self._failed.strerror}")
        try:
            return self._write(memoryview(data).cast("B"))
        except OSError as exc:
            self._failed = exc
            raise

    def _write(self, view: memoryview) -> int:
        head = 0
        if self._direct is not None and self._offset % ALIGN == 0:
            head = len(view) - len(view) % ALIGN
            if head:
                try:
                    _pwrite_all(self._direct, view[:head], self._offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._drop_direct()  # an unaligned buffer, or a file system that refuses it late
                    head = 0
        if head < len(view):
            _pwrite_all(self._fd, view[head:], self._offset + head)
        self._offset += len(view)
        return len(view)

    def _drop_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def close(self) -> None:
        self._drop_direct()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
