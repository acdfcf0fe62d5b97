"""The SQLite store: one file under the data dir, migrated to the latest schema when opened.

WAL journaling keeps every committed transaction across a SIGKILL of the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from dms.store.direct import Direct, Table
from dms.store.health import DiskFull, check_database, disk_full, storage_fault

log = logging.getLogger(__name__)
M = TypeVar("M", bound=DeclarativeBase)

MIGRATIONS = Path(__file__).parent / "migrations"
DB_NAME = "dms.sqlite3"


MIN_FREE_BYTES = 1 << 20
"""Below this much free disk the store refuses new work up front (SQLite needs room for its WAL too)."""


class StoreError(Exception):
    """The store cannot be opened or migrated."""


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


HEAD_REVISION = "0004"
"""The newest migration's revision (tests/unit/test_migrations.py holds it to Alembic's head)."""


def stored_revision(path: Path) -> str | None:
    """The schema revision the database at `path` is at; None when it has none (new) or cannot say. Blocking."""
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def migrate(path: Path) -> None:
    """Bring the database at `path` to the latest schema (creates it if missing). Blocking.

    A database already at the head is left alone without importing Alembic (with Mako and Pygments it is
    about 11 MB of the daemon's memory, for nothing on every start but the first after an upgrade)."""
    if stored_revision(path) == HEAD_REVISION:
        return
    from alembic import command  # imported here: only a start that migrates needs Alembic
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _pragmas)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


class Store:
    """Owns the engine; hands out sessions. Open with `await open()`, close with `await close()`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._direct: Direct | None = None
        self._tables: dict[type[Any], Table[Any]] = {}

    async def open(self) -> None:
        """Check the file (a damaged one refuses, naming it and what to do), migrate it, open the engine."""
        full = (
            f"{self.path}: the disk holding it is full, so the database cannot be opened; free some space"
            " and start again (nothing was changed)"
        )
        try:
            problem = await asyncio.to_thread(check_database, self.path)
        except DiskFull as exc:
            raise StoreError(full) from exc
        if problem:
            raise StoreError(
                f"{self.path}: {problem}. The daemon will not start on it: restore it from a backup, or move it"
                f" (with its -wal and -shm files) aside to start with an empty store"
            )
        try:
            await asyncio.to_thread(migrate, self.path)
        except (sqlite3.Error, SQLAlchemyError) as exc:
            if storage_fault(exc) or disk_full(self.path.parent):
                raise StoreError(full) from exc
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"{self.path}: cannot open the database: {reason}") from exc
        self._engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}")
        event.listen(self._engine.sync_engine, "connect", _pragmas)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._direct = Direct(self.path)
        await self._direct.open()
        log.info("store open at %s", self.path)

    def check_space(self) -> None:
        """OSError(ENOSPC) when the data dir's disk has less than MIN_FREE_BYTES left: work that must be stored
        later (a payment being checked, then its job's frames) is refused now, while the asker can still be told."""
        st = os.statvfs(self.path.parent)
        if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path.parent))

    def session(self) -> AsyncSession:
        if self._sessions is None:
            raise RuntimeError("store is not open")
        return self._sessions()

    @property
    def direct(self) -> Direct:
        """The fast path for a job's small, frequent transactions (one thread hop each; see direct.py)."""
        if self._direct is None:
            raise RuntimeError("store is not open")
        return self._direct

    def table(self, model: type[M]) -> Table[M]:
        """`model`'s rows for the fast path, encoded as the engine encodes them."""
        if self._engine is None:
            raise RuntimeError("store is not open")
        if model not in self._tables:
            self._tables[model] = Table(model, self._engine.dialect)
        return self._tables[model]

    async def close(self) -> None:
        if self._direct is not None:
            await self._direct.close()
            self._direct = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None
