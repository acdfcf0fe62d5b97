"""WASM modules on this node: sha256-named blobs under the data dir, and a registry of named entries.

Self-contained on purpose, so content-addressed artifacts can replace the blob half later. A blob is
`<dir>/<sha256>.wasm`; the registry (`<dir>/index.json`) maps a name to a blob with a description and
the module's WASI imports and exports, read from the module itself. Deleting an entry removes the blob
when no entry refers to it. Blobs that arrive with a job (not registered) are kept as a cache.
One writer: this object, under its lock.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dms.errors import Conflict, FieldProblem, InvalidInput, NotFound

MAX_MODULE_BYTES = 32 * 2**20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WASI_P1 = "wasi_snapshot_preview1"
WASI_P1_FUNCS = frozenset(
    [
        "args_get",
        "args_sizes_get",
        "environ_get",
        "environ_sizes_get",
        "clock_res_get",
        "clock_time_get",
        "fd_advise",
        "fd_allocate",
        "fd_close",
        "fd_datasync",
        "fd_fdstat_get",
        "fd_fdstat_set_flags",
        "fd_fdstat_set_rights",
        "fd_filestat_get",
        "fd_filestat_set_size",
        "fd_filestat_set_times",
        "fd_pread",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "fd_pwrite",
        "fd_read",
        "fd_readdir",
        "fd_renumber",
        "fd_seek",
        "fd_sync",
        "fd_tell",
        "fd_write",
        "path_create_directory",
        "path_filestat_get",
        "path_filestat_set_times",
        "path_link",
        "path_open",
        "path_readlink",
        "path_remove_directory",
        "path_rename",
        "path_symlink",
        "path_unlink_file",
        "poll_oneoff",
        "proc_exit",
        "proc_raise",
        "sched_yield",
        "random_get",
        "sock_accept",
        "sock_recv",
        "sock_send",
        "sock_shutdown",
    ]
)


@dataclass(frozen=True)
class ModuleInfo:
    """What a module asks for and offers, read from its binary."""

    imports: tuple[str, ...]
    """`module.name` of every import."""
    exports: tuple[str, ...]
    problem: str | None
    """Why this node would refuse to run it (anything beyond WASI preview 1, no `_start`), or None."""


def wasi_problem(imports: list[tuple[str, str, str]], exports: list[str]) -> str | None:
    """Pure: why a module with these (module, name, kind) imports and these exports cannot run here."""
    beyond = [f"{m}.{n}" for m, n, kind in imports if m != WASI_P1 or n not in WASI_P1_FUNCS or kind != "func"]
    if beyond:
        shown = ", ".join(beyond[:5]) + (f" and {len(beyond) - 5} more" if len(beyond) > 5 else "")
        return f"the module imports {shown}; this provider offers WASI preview 1 only (no network, no host)"
    if "_start" not in exports:
        return "the module exports no _start function (it is not a WASI command)"
    return None


def to_binary(data: bytes) -> bytes:
    """The module's binary form: WAT text is accepted and compiled. InvalidInput when it is neither."""
    import wasmtime

    if data.startswith(b"\0asm"):
        return data
    try:
        return bytes(wasmtime.wat2wasm(data.decode()))
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput.of([FieldProblem("module", f"not a WebAssembly module (binary or WAT): {first}")]) from None


_engine: Any = None


def inspect_module(binary: bytes) -> ModuleInfo:
    """Compile (to validate) and read imports and exports. InvalidInput when it is not a valid module."""
    global _engine
    import wasmtime

    if _engine is None:  # Pulley: compiling for it needs no executable memory (MemoryDenyWriteExecute)
        config = wasmtime.Config()
        config.target = "pulley64"
        _engine = wasmtime.Engine(config)
        # Freed at exit while wasmtime's bindings are whole: left to the interpreter's teardown, its finaliser
        # ran after them and printed a TypeError as the process (daemon or test run) ended.
        atexit.register(_engine.close)
    try:
        module = wasmtime.Module(_engine, binary)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).splitlines()[0]
        raise InvalidInput.of([FieldProblem("module", f"not a valid WebAssembly module: {first}")]) from None
    imports = [(i.module, i.name or "", kind_of(i.type)) for i in module.imports]
    exports = [e.name for e in module.exports]
    return ModuleInfo(tuple(f"{m}.{n}" for m, n, _ in imports), tuple(exports), wasi_problem(imports, exports))


def kind_of(t: object) -> str:
    return type(t).__name__.removesuffix("Type").lower()


@dataclass(frozen=True)
class ModuleEntry:
    name: str
    description: str
    sha256: str
    size: int
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    added_at: str


class ModuleStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._index = root / "index.json"
        self._lock = asyncio.Lock()

    def path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise InvalidInput.of([FieldProblem("module", "must be a sha256 in lower-case hex (64 digits)")])
        return self.root / f"{sha256}.wasm"

    def has(self, sha256: str) -> bool:
        return SHA256.match(sha256) is not None and self.path(sha256).is_file()

    # --- blobs ---

    async def put_blob(self, binary: bytes, expect_sha256: str | None = None) -> str:
        """Store a module binary; its sha256. InvalidInput when it does not hash to `expect_sha256`."""
        if len(binary) > MAX_MODULE_BYTES:
            raise InvalidInput.of([FieldProblem("module", f"{len(binary)} bytes; the limit is {MAX_MODULE_BYTES}")])
        sha = hashlib.sha256(binary).hexdigest()
        if expect_sha256 is not None and sha != expect_sha256:
            raise InvalidInput.of([FieldProblem("module", f"content hashes to {sha}, not {expect_sha256}")])
        async with self._lock:
            await asyncio.to_thread(self._write_atomic, self.path(sha), binary)
        return sha

    async def read(self, sha256: str) -> bytes:
        if not self.has(sha256):
            raise NotFound(f"module {sha256} is not on this node")
        return await asyncio.to_thread(self.path(sha256).read_bytes)

    async def info(self, sha256: str) -> ModuleInfo:
        return await asyncio.to_thread(inspect_module, await self.read(sha256))

    # --- the registry ---

    async def add(self, name: str, description: str, data: bytes) -> ModuleEntry:
        """Register `data` (binary or WAT) under `name`. InvalidInput, or Conflict when the name is taken."""
        problems = []
        if not NAME.match(name):
            problems.append(FieldProblem("name", "1-128 letters, digits, '.', '_' or '-', starting alphanumeric"))
        if len(description) > 1024:
            problems.append(FieldProblem("description", "at most 1024 characters"))
        if problems:
            raise InvalidInput.of(problems)
        binary = await asyncio.to_thread(to_binary, data)
        info = await asyncio.to_thread(inspect_module, binary)
        if info.problem:
            raise InvalidInput.of([FieldProblem("module", info.problem)])
        entries = await self.list()
        if any(e.name == name for e in entries):
            raise Conflict(f"a module named {name} is already registered; delete it first", code="module_exists")
        sha = await self.put_blob(binary)
        entry = ModuleEntry(
            name, description, sha, len(binary), info.imports, info.exports, datetime.now(UTC).isoformat()
        )
        async with self._lock:
            index = self._load()
            if name in index:
                raise Conflict(f"a module named {name} is already registered; delete it first", code="module_exists")
            index[name] = asdict(entry)
            await asyncio.to_thread(self._save, index)
        return entry

    async def list(self) -> list[ModuleEntry]:
        async with self._lock:
            return [entry_of(v) for _, v in sorted(self._load().items())]

    async def get(self, ref: str) -> ModuleEntry:
        """An entry by name or by sha256. NotFound."""
        for e in await self.list():
            if ref in (e.name, e.sha256):
                return e
        raise NotFound(f"no module named {ref} in this node's registry", code="no_module")

    async def delete(self, ref: str) -> ModuleEntry:
        """Remove the entry (by name or sha256); the blob too when no other entry refers to it. NotFound."""
        entry = await self.get(ref)
        async with self._lock:
            index = self._load()
            index.pop(entry.name, None)
            await asyncio.to_thread(self._save, index)
            if not any(v["sha256"] == entry.sha256 for v in index.values()):
                self.path(entry.sha256).unlink(missing_ok=True)
        return entry

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._index.read_text())
        except FileNotFoundError:
            return {}
        return dict(data) if isinstance(data, dict) else {}

    def _save(self, index: dict[str, dict[str, Any]]) -> None:
        self._write_atomic(self._index, json.dumps(index, indent=1, sort_keys=True).encode())

    def _write_atomic(self, path: Path, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def entry_of(v: dict[str, Any]) -> ModuleEntry:
    return ModuleEntry(
        str(v["name"]), str(v["description"]), str(v["sha256"]), int(v["size"]),
        tuple(v["imports"]), tuple(v["exports"]), str(v["added_at"]),
    )  # fmt: skip
