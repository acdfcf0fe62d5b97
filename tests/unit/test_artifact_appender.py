"""Appending received bytes past the page cache: the file holds exactly what was written, in order, whether
each piece went straight to the disk (aligned) or through the page cache (anything else)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

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
