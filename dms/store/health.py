"""Is the database file sound enough to start on? Checked before anything writes to it.

SQLite opens a zero-length file as an empty database and only notices a truncated or damaged one when a
query reaches the missing pages: either way the daemon would start as if freshly installed, silently
losing its onboarding and jobs. `file_problem` reads the header (pure); `check_database` adds SQLite's own
`PRAGMA quick_check` (reads every page once: about a second per few hundred MB).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing
from pathlib import Path

HEADER = b"SQLite format 3\x00"
HEADER_SIZE = 100
FULL_BELOW = 2**20
"""A file system with less free than this counts as full: SQLite cannot even open its -shm file there."""


class DiskFull(Exception):
    """The database could not be read because the disk holding it is full (not because it is damaged)."""


def disk_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BELOW


def header_problem(head: bytes, size: int, wal_size: int) -> str | None:
    """What is wrong with a database file of `size` bytes starting with `head`, or None.

    `wal_size` is the size of its write-ahead log: committed pages may still live there only, so the
    page count in the header is compared with the file's size only when the log is empty.
    """
    if size == 0:
        return "the database file is empty (0 bytes): it was truncated or never written"
    if not HEADER.startswith(head[: len(HEADER)]):
        return "the file is not an SQLite database (its header is wrong)"
    if size < HEADER_SIZE:
        return f"the database file is truncated ({size} bytes, shorter than SQLite's header)"
    raw_page = int.from_bytes(head[16:18], "big")
    page_size = 65536 if raw_page == 1 else raw_page
    if page_size < 512 or page_size & (page_size - 1):
        return f"the database header is damaged (page size {raw_page})"
    if size % page_size:
        return f"the database file is truncated ({size} bytes, not a whole number of {page_size}-byte pages)"
    pages = int.from_bytes(head[28:32], "big")
    header_valid = pages > 0 and head[24:28] == head[92:96]
    if header_valid and wal_size == 0 and size < pages * page_size:
        return f"the database file is truncated ({size} bytes; its header says {pages * page_size})"
    return None


def check_database(path: Path) -> str | None:
    """What is wrong with the database at `path`, or None (also when it does not exist yet). Blocking.

    Raises DiskFull when SQLite cannot read it for want of space: that is no damage, and the advice differs.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    wal = path.with_name(path.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    with path.open("rb") as f:
        head = f.read(HEADER_SIZE)
    problem = header_problem(head, size, wal_size)
    if problem:
        return problem
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
            rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        if storage_fault(exc) or disk_full(path.parent):
            raise DiskFull(str(exc)) from exc
        return f"the database is damaged: {exc}"
    if [r[0] for r in rows] != ["ok"]:
        found = " ".join(str(r[0]) for r in rows).replace("*** in database main ***", "").split()
        return "the database is damaged: " + " ".join(found)[:300]
    return None


SQLITE_FULL = 13
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def storage_fault(exc: BaseException) -> str | None:
    """'the disk is full' when `exc` (or what caused it) is SQLite's SQLITE_FULL or an OS ENOSPC/EDQUOT.

    SQLAlchemy wraps the driver's error (`.orig`) and aiosqlite chains it, so the whole chain is walked.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.Error) and (
            getattr(e, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(e)
        ):
            return "the disk holding the data dir is full (the database cannot grow)"
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            where = f" ({e.filename})" if e.filename else ""
            return f"the disk holding the data dir is full{where}"
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return None
