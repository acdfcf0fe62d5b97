"""A damaged database refuses the start loudly (never a silent fresh start); a full disk gives clear errors."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_daemon_process import onboard
from tests.e2e.test_network_and_jobs import job, known, post_error
from tests.procs import DAEMON, DmsProcess, post, wait_for


def start_once(d: DmsProcess) -> subprocess.CompletedProcess[str]:
    """Start the daemon in the foreground and return how it ended (a refused start ends at once)."""
    return subprocess.run([*DAEMON, "--config", str(d.config)], capture_output=True, text=True, timeout=60)


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
    out = start_once(d)
    assert out.returncode == 1, out.stderr
    refusal = [line for line in out.stderr.splitlines() if line.startswith("nunet-dms: cannot start:")]
    assert len(refusal) == 1, out.stderr
    line = refusal[0]
    assert str(db) in line and why in line and "restore it from a backup" in line, line
    assert str(d.data_dir / "metadataV2.json") in line, line  # where the onboarding can be redone from
    assert db.read_bytes() == damaged  # nothing was written to it

    if damage is zero_length:  # once is enough: the same file, whole again, starts with its onboarding
        db.write_bytes(pristine)
        try:
            d.start()
            assert d.get("/api/v1/onboarding/status") == status
        finally:
            d.stop()


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its file system has no block left; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


@pytest.fixture
def sp_on_small_disk(dms_process: Callable[..., DmsProcess]) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    """A CP, and an SP whose data dir is a 16 MiB tmpfs that the test can fill."""
    cp = dms_process("cp").start()
    onboard(cp, 0.5)
    me = cp.get("/api/v1/peers/self")
    sp = dms_process("sp", p2p={"bootstrap_peers": [me["addrs"][0]]})
    sp.data_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(sp.data_dir)], check=True)
    try:
        sp.start()
        onboard(sp, 0.2)
        wait_for(lambda: me["peer_id"] in known(sp), 10, "the SP sees the CP")
        yield cp, sp
    finally:
        sp.stop()
        subprocess.run(["umount", str(sp.data_dir)], check=True)


async def test_a_full_disk_gives_clear_errors_and_the_node_recovers(
    sp_on_small_disk: tuple[DmsProcess, DmsProcess],
) -> None:
    _, sp = sp_on_small_disk
    quote = post(sp, "/run/request-service", job("echo still here"))
    filler = fill(sp.data_dir)

    # REST: a new quote cannot be stored.
    status, err = post_error(sp, "/run/request-service", job("echo no room"))
    assert status == 507 and err["code"] == "disk_full", err
    assert "disk holding the data dir is full" in err["message"] and "free some space" in err["message"]

    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        pay = {"action": "send-status", "job_id": quote["job_id"],
               "message": {"transaction_type": "fund", "transaction_status": "success"}}  # fmt: skip
        await ws.send_json(pay)
        answer = await ws.receive_json(timeout=10)
        assert answer["action"] == "error" and "disk holding the data dir is full" in answer["message"], answer
        assert sp.get(f"/api/v1/run/jobs/{quote['job_id']}")["state"] == "awaiting_payment"  # nothing changed

        # Space returns: the same socket, the same quote, no restart.
        filler.unlink()
        await ws.send_json(pay)
        while (frame := await ws.receive_json(timeout=60))["action"] not in ("job-completed", "job-failed", "error"):
            pass
        assert frame["action"] == "job-completed", frame
    assert post(sp, "/run/request-service", job("echo room again"))["job_id"]

    # Starting on a full disk: refused as full (not as damaged), and fine once there is room.
    assert sp.terminate() == 0
    filler = fill(sp.data_dir)
    out = start_once(sp)
    assert out.returncode == 1, out.stderr
    assert "the disk holding it is full" in out.stderr and "damaged" not in out.stderr, out.stderr
    filler.unlink()
    sp.start()
    assert sp.get(f"/api/v1/run/jobs/{quote['job_id']}")["state"] == "completed"
