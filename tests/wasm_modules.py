"""Real WASI preview 1 programs for tests and benches, written as WAT text (wasmtime compiles it)."""

from __future__ import annotations

import wasmtime

WASI = "wasi_snapshot_preview1"
_IMPORTS = f"""
  (import "{WASI}" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "{WASI}" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "{WASI}" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "{WASI}" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "{WASI}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "{WASI}" "proc_exit" (func $proc_exit (param i32)))
  (import "{WASI}" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
"""
# Memory layout: 0..8 scratch, 16 iovec, 24 nwritten, 32 "\\n", 40.. constant strings, 1024 pointer
# array, 8192 string buffer.
_HELPERS = """
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func $write (param $fd i32) (param $p i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $p))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func $print_all (param $count i32) (local $i i32) (local $p i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (local.set $p (i32.load (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4)))))
      (call $write (i32.const 1) (local.get $p) (call $strlen (local.get $p)))
      (call $write (i32.const 1) (i32.const 32) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  (data (i32.const 32) "\\n")
"""


def program(body: str, data: str = "", pages: int = 1, max_pages: int | None = None) -> str:
    limit = f" {max_pages}" if max_pages is not None else ""
    return (
        f'(module {_IMPORTS}\n (memory (export "memory") {pages}{limit})\n{_HELPERS}\n{data}\n'
        f' (func (export "_start") {body}))'
    )


PRINTER = program(
    """
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $args_get (i32.const 1024) (i32.const 8192)))
    (call $print_all (i32.load (i32.const 0)))
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $environ_get (i32.const 1024) (i32.const 8192)))
    (call $print_all (i32.load (i32.const 0)))
    (call $write (i32.const 2) (i32.const 40) (i32.const 5))""",
    '(data (i32.const 40) "done\\n")',
)
"""Prints argv (one per line, argv[0] first), then the environment, then "done" on stderr."""

BURNER = program(
    """(call $write (i32.const 1) (i32.const 40) (i32.const 8))
    (loop $l (br $l))""",
    '(data (i32.const 40) "burning\\n")',
)
"""Prints "burning", then spins until stopped."""

GROWER = program(
    """(block $full (loop $l
      (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (br $l)))
    (call $write (i32.const 2) (i32.const 40) (i32.const 12))
    (call $proc_exit (i32.const 3))""",
    '(data (i32.const 40) "grow failed\\n")',
)
"""Grows its memory a page at a time until `memory.grow` returns -1, then exits with code 3."""

SLEEPER = program(
    """(call $write (i32.const 1) (i32.const 40) (i32.const 9))
    (i64.store (i32.const 200) (i64.const 0))
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const 3600000000000))
    (i64.store (i32.const 232) (i64.const 0))
    (i32.store16 (i32.const 240) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)))""",
    '(data (i32.const 40) "sleeping\\n")',
)
"""Prints "sleeping", then sleeps an hour in a WASI `poll_oneoff` (no epoch deadline stops it)."""


FLOODER = program(
    """(memory.fill (i32.const 1024) (i32.const 120) (i32.const 8192))
    (loop $l (call $write (i32.const 1) (i32.const 1024) (i32.const 8192)) (br $l))"""
)
"""Writes 8 KiB blocks of "x" to stdout as fast as it can, until stopped."""


def _open(dirfd: int, path_at: int, path_len: int, oflags: int, rights: int) -> str:
    return (
        f"(call $path_open (i32.const {dirfd}) (i32.const 0) (i32.const {path_at}) (i32.const {path_len})"
        f" (i32.const {oflags}) (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 0))"
    )


_OPENS = [
    (3, "../../../../../../etc/passwd", 0, 2),  # out of /inputs
    (4, "../../../../../../etc/passwd", 0, 2),  # out of /outputs
    (3, "/etc/passwd", 0, 2),  # absolute
    (3, "written", 1, 64),  # create in the read-only /inputs
    (9, "etc/passwd", 0, 2),  # a descriptor that is not preopened
]


def _opener() -> str:
    data, body, at = [], [], 1000
    for fd, path, oflags, rights in _OPENS:
        data.append(f'(data (i32.const {at}) "{path}")')
        body.append(
            f"(if (i32.eqz {_open(fd, at, len(path), oflags, rights)})"
            " (then (call $write (i32.const 1) (i32.const 40) (i32.const 7)) (local.set $opened (i32.const 1)))"
            " (else (call $write (i32.const 1) (i32.const 48) (i32.const 7))))"
        )
        at += 64
    data.append('(data (i32.const 40) "opened\\n")(data (i32.const 48) "denied\\n")')
    return program("(local $opened i32)" + "\n".join(body) + "(call $proc_exit (local.get $opened))", "\n".join(data))


OPENER = _opener()
"""Tries to reach the host's files five ways; prints "denied" or "opened" for each; exits 1 if any opened."""

WRITER = program(
    f"""(if (i32.ne {_open(4, 1000, 10, 9, 64)} (i32.const 0)) (then (call $proc_exit (i32.const 2))))
    (i32.store (i32.const 16) (i32.const 60))
    (i32.store (i32.const 20) (i32.const 14))
    (drop (call $fd_write (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 24)))
    (drop (call $fd_close (i32.load (i32.const 0))))""",
    '(data (i32.const 1000) "result.txt") (data (i32.const 60) "hello outputs\\n")',
)
"""Writes "hello outputs" to /outputs/result.txt (exit code 2 when it cannot)."""

SOCKETS = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "connect" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))"""
"""Asks for a host function beyond WASI preview 1: refused at admission."""


def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))
