"""dms.store.health.header_problem: the database header read without SQLite, as pure data."""

from __future__ import annotations

import pytest

from dms.store.health import HEADER, header_problem


def head(page_size: int = 4096, pages: int = 10, valid: bool = True) -> bytes:
    h = bytearray(100)
    h[:16] = HEADER
    h[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
    h[24:28] = (5).to_bytes(4, "big")  # change counter
    h[28:32] = pages.to_bytes(4, "big")
    h[92:96] = (5 if valid else 4).to_bytes(4, "big")  # version-valid-for
    return bytes(h)


@pytest.mark.parametrize(
    ("data", "size", "wal", "problem"),
    [
        (b"", 0, 0, "empty (0 bytes)"),
        (b"SQLite fo", 9, 0, "truncated (9 bytes"),
        (b"PK\x03\x04" + bytes(96), 4096, 0, "not an SQLite database"),
        (head(), 4096 * 10 - 100, 0, "not a whole number of 4096-byte pages"),
        (head(), 4096 * 5, 0, "its header says 40960"),
        (head(page_size=1000), 4000, 0, "page size 1000"),
    ],
)
def test_problems_are_named(data: bytes, size: int, wal: int, problem: str) -> None:
    found = header_problem(data[:100], size, wal)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    ("data", "size", "wal"),
    [
        (head(), 4096 * 10, 0),
        (head(page_size=65536, pages=2), 65536 * 2, 0),
        (head(), 4096 * 5, 4096 * 6),  # the rest is still in the write-ahead log
        (head(valid=False), 4096 * 5, 0),  # a stale page count in the header is not to be trusted
    ],
)
def test_sound_headers_pass(data: bytes, size: int, wal: int) -> None:
    assert header_problem(data, size, wal) is None


def test_storage_faults_are_recognised_through_wrappers() -> None:
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from dms.store.health import storage_fault

    full = sqlite3.OperationalError("database or disk is full")
    wrapped = OperationalError("UPDATE sp_jobs ...", {}, full)
    try:
        try:
            raise wrapped
        except OperationalError as exc:
            raise RuntimeError("while updating a job") from exc
    except RuntimeError as outer:
        assert storage_fault(outer) == "the disk holding the data dir is full (the database cannot grow)"
    assert storage_fault(OSError(errno.ENOSPC, "No space left", "/data/metadataV2.json")) == (
        "the disk holding the data dir is full (/data/metadataV2.json)"
    )
    assert storage_fault(sqlite3.OperationalError("database is locked")) is None
    assert storage_fault(OSError(errno.EACCES, "Permission denied")) is None
