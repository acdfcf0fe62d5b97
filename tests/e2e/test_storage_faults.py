"""A damaged database refuses the start loudly (never a silent fresh start); a full disk gives clear errors."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_daemon_process import onboard
from tests.procs import DAEMON, DmsProcess


def zero_length(db: Path) -> None:
    db.write_bytes(b"")


def truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2 // 4096 * 4096])  # whole pages, fewer than the header says


def torn_page(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) - 1000])


def garbled_pages(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[4096:] = bytes((i * 7 + 3) % 251 for i in range(len(data) - 4096))  # every page after the first
    db.write_bytes(bytes(data))


def not_sqlite(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 100)


DAMAGE = [
    (zero_length, "empty (0 bytes)"),
    (truncated, "truncated"),
    (torn_page, "truncated"),
    (garbled_pages, "damaged"),
    (not_sqlite, "not an SQLite database"),
]


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> tuple[DmsProcess, bytes, dict[str, object]]:
    d = DmsProcess(tmp_path_factory.mktemp("faults"))
    try:
        d.start()
        onboard(d)
        status = d.get("/api/v1/onboarding/status")
        assert d.terminate() == 0
    finally:
        d.stop()
    db = d.data_dir / "dms.sqlite3"
    assert not db.with_name("dms.sqlite3-wal").exists() or db.with_name("dms.sqlite3-wal").stat().st_size == 0
    return d, db.read_bytes(), status


@pytest.mark.parametrize(("damage", "why"), DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_a_damaged_database_refuses_the_start(
    onboarded: tuple[DmsProcess, bytes, dict[str, object]], damage: Callable[[Path], None], why: str
) -> None:
    d, pristine, status = onboarded
    db = d.data_dir / "dms.sqlite3"
    db.write_bytes(pristine)
    damage(db)
    damaged = db.read_bytes()
    out = subprocess.run([*DAEMON, "--config", str(d.config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    refusal = [line for line in out.stderr.splitlines() if line.startswith("nunet-dms: cannot start:")]
    assert len(refusal) == 1, out.stderr
    line = refusal[0]
    assert str(db) in line and why in line and "restore it from a backup" in line, line
    assert str(d.data_dir / "metadataV2.json") in line, line  # where the onboarding can be redone from
    assert db.read_bytes() == damaged  # nothing was written to it

    # The same file, whole again: the node starts with its onboarding.
    db.write_bytes(pristine)
    try:
        d.start()
        assert d.get("/api/v1/onboarding/status") == status
    finally:
        d.stop()
