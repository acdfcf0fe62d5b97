"""The store's fast path: the small transactions a job makes on its critical path, one thread hop each.

Through SQLAlchemy's async session one state move (an UPDATE and an INSERT) costs about 2 ms here:
aiosqlite hops to its thread and back for every statement (begin, each execute, commit, reset), with the
ORM's work in between. A job makes about twenty such transactions between the request and its final
frame, so they were most of dms's overhead over the bare engine. Here one `sqlite3` connection lives in
one worker thread and each call runs a whole transaction there: one hop, about 0.05 ms
(bench/RESULTS.md, "Job latency after the store's fast path").

The same file, the same pragmas (WAL, synchronous=NORMAL: a committed transaction survives a crash of
the process, the contract of docs/job-lifecycle.md), and the same bytes as SQLAlchemy writes: values are
encoded and decoded with the tables' own column types (`Table`), so either path reads what the other
wrote. Writers on the two paths are serialised by SQLite's own lock (`BEGIN IMMEDIATE`, busy timeout);
the wait happens in the worker thread, never on the event loop.

Point reads (a job's row, the onboarding record, the allocations, an event number) run on the event loop
itself, on a second connection that only reads (`peek`): in WAL a reader never waits for a writer, so a
read takes microseconds there, against a thread hop (and its GIL hand-over) each; the rare read SQLite
finds busy (a WAL recovery) goes to the worker thread instead, so no wait happens on the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Dialect
from sqlalchemy.orm import DeclarativeBase

T = TypeVar("T")
M = TypeVar("M", bound=DeclarativeBase)

BUSY_TIMEOUT_MS = 5000


def _connect_reader(path: Path) -> sqlite3.Connection:
    """The event loop's own connection: reads only, and never waits (busy: the caller goes to the thread)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("PRAGMA busy_timeout=0")
    conn.execute("PRAGMA query_only=ON")
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class Direct:
    """One connection, one worker thread; each `write` or `read` is one transaction there."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dms-store")
        self._conn = await asyncio.get_running_loop().run_in_executor(self._pool, _connect, self._path)
        self._reader = _connect_reader(self._path)  # after the writer made the file WAL

    async def close(self) -> None:
        pool, conn, reader = self._pool, self._conn, self._reader
        self._pool = self._conn = self._reader = None
        if reader is not None:
            reader.close()
        if pool is not None:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
            pool.shutdown(wait=True)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction (all or nothing: an exception rolls it back and is re-raised)."""
        return await self._run(fn, "BEGIN IMMEDIATE")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one read transaction (one consistent snapshot for all its statements)."""
        return await self._run(fn, "BEGIN")

    async def peek(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn`, a small read (a few rows by key), in one read transaction on the event loop's own
        connection; in the worker thread when SQLite would make it wait."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("store is not open")
        reader.execute("BEGIN")  # deferred: takes no lock; the first read may find the database busy
        try:
            return fn(reader)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            if reader.in_transaction:  # SQLite may have rolled it back itself on busy
                reader.execute("COMMIT")
        return await self.read(fn)  # busy (e.g. a WAL recovery): wait for it in the worker thread, not here

    async def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        pool, conn = self._pool, self._conn
        if pool is None or conn is None:
            raise RuntimeError("store is not open")

        def transaction() -> T:
            conn.execute(begin)
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(pool, transaction)


class Table(Generic[M]):
    """A mapped table's rows in plain SQL, encoded and decoded by its columns' own SQLAlchemy types."""

    def __init__(self, model: type[M], dialect: Dialect) -> None:
        self.model = model
        table: Any = model.__table__
        self.name: str = table.name
        self.columns: tuple[str, ...] = tuple(c.name for c in table.columns)
        self._enc: dict[str, Any] = {}
        self._dec: dict[str, Any] = {}
        self._defaults: dict[str, Any] = {}
        for c in table.columns:
            impl = c.type.dialect_impl(dialect)
            self._enc[c.name] = impl.bind_processor(dialect)
            self._dec[c.name] = impl.result_processor(dialect, None)
            if c.default is not None and c.default.is_scalar:
                self._defaults[c.name] = c.default.arg
        self._select = f"SELECT {', '.join(self.columns)} FROM {self.name}"

    def encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in values.items():
            proc = self._enc[k]
            out[k] = v if proc is None else proc(v)
        return out

    def insert(self, conn: sqlite3.Connection, values: Mapping[str, Any]) -> None:
        """INSERT one row; the columns' Python-side defaults fill what `values` leaves out."""
        row = self.encode({**{k: v for k, v in self._defaults.items() if k not in values}, **values})
        keys = list(row)
        conn.execute(f"INSERT INTO {self.name} ({', '.join(keys)}) VALUES ({', '.join(':' + k for k in keys)})", row)

    def insert_many(self, conn: sqlite3.Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        for values in rows:
            self.insert(conn, values)

    def values_of(self, obj: M) -> dict[str, Any]:
        """An ORM object's column values (an autoincrement key left unset is left out)."""
        values = {k: getattr(obj, k) for k in self.columns}
        return {k: v for k, v in values.items() if not (k == "id" and v is None)}

    def select(self, conn: sqlite3.Connection, where: str = "", params: Sequence[Any] = ()) -> list[M]:
        """Rows as detached ORM objects (as a closed session's `get` returns them)."""
        cur = conn.execute(f"{self._select} {where}", params)
        return [self.load(r) for r in cur.fetchall()]

    def load(self, raw: Sequence[Any]) -> M:
        values = {}
        for k, v in zip(self.columns, raw, strict=True):
            proc = self._dec[k]
            values[k] = v if proc is None else proc(v)
        return self.model(**values)
