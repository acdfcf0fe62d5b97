"""Appending received bytes past the page cache: the file holds exactly what was written, in order, whether
each piece went straight to the disk (aligned) or through the page cache (anything else)."""

from __future__ import annotations

import mmap
import os
import subprocess
from pathlib import Path

import pytest

from dms.artifacts.appender import ALIGN, Appender


def aligned(data: bytes) -> memoryview:
    """A page-aligned buffer holding `data`, as the direct path's frame buffers are."""
    buf = mmap.mmap(-1, max(len(data), 1))
    buf[: len(data)] = data
    return memoryview(buf)[: len(data)]


def test_aligned_frames_then_an_odd_tail_make_the_same_file(tmp_path: Path) -> None:
    frames = [os.urandom(ALIGN * 256), os.urandom(ALIGN * 256), os.urandom(ALIGN * 3 + 123)]
    with Appender(tmp_path / "blob") as out:
        assert out.direct, "this machine's /tmp file system takes O_DIRECT"
        for frame in frames:
            assert out.write(aligned(frame)) == len(frame)
        assert out.direct
    assert (tmp_path / "blob").read_bytes() == b"".join(frames)


def test_a_resumed_file_with_an_odd_end_goes_on_where_it_stopped(tmp_path: Path) -> None:
    first = os.urandom(5000)
    (tmp_path / "blob").write_bytes(first)
    rest = [os.urandom(ALIGN * 2), os.urandom(ALIGN * 2 + 1), os.urandom(ALIGN)]
    with Appender(tmp_path / "blob") as out:
        for piece in rest:
            out.write(aligned(piece))
    assert (tmp_path / "blob").read_bytes() == first + b"".join(rest)


def test_unaligned_buffers_go_through_the_page_cache(tmp_path: Path) -> None:
    data = os.urandom(ALIGN * 8 + 1)
    odd = memoryview(bytearray(b"x" + data))[1:]  # one byte past an allocation's start: never block-aligned
    with Appender(tmp_path / "blob") as out:
        out.write(odd)
        assert not out.direct  # refused (EINVAL) once, then never tried again
        out.write(b"tail")
    assert (tmp_path / "blob").read_bytes() == data + b"tail"


def test_after_a_failed_write_every_later_one_fails_and_the_file_is_a_prefix(tmp_path: Path) -> None:
    """A full file system mid-blob: the file keeps the pieces before the failure, in order, and nothing
    after it (a piece written after a failed one would leave a hole that a resume could not see)."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        pieces = [os.urandom(ALIGN * 8) for _ in range(3)]  # 32 KiB each: the third does not fit
        with Appender(small / "blob") as out:
            out.write(aligned(pieces[0]))
            out.write(aligned(pieces[1]))
            with pytest.raises(OSError):
                out.write(aligned(pieces[2]))
            with pytest.raises(OSError, match="an earlier write failed"):
                out.write(b"x")
        held = (small / "blob").read_bytes()
        assert held == b"".join(pieces)[: len(held)] and len(held) < 3 * ALIGN * 8
    finally:
        subprocess.run(["umount", str(small)], check=True)
