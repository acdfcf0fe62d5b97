"""The daemon as a real process: crash safety, side-by-side instances, refusals at start, systemd protocol."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.conftest import PAYOUT
from tests.procs import DAEMON, DmsProcess, free_port, post, write_config


def onboard(d: DmsProcess, share: float = 0.5, channel: str = "nunet-test") -> dict[str, object]:
    m = d.get("/api/v1/onboarding/provisioned")
    body = {
        "memory": int(m["memory"] * share),
        "cpu": int(m["cpu"] * share),
        "channel": channel,
        "payment_addr": PAYOUT,
        "ntx_price": 7,
    }
    return dict(post(d, "/onboarding/onboard", body))


def test_onboarding_survives_kill_9(dms_process: Callable[..., DmsProcess]) -> None:
    d = dms_process().start()
    onboard(d)
    before = d.get("/api/v1/onboarding/status")
    meta_before = d.get("/api/v1/onboarding/metadata")
    d.kill9()
    d.start()
    assert d.get("/api/v1/onboarding/status") == before
    assert d.get("/api/v1/onboarding/metadata") == meta_before
    assert json.loads(Path(before["metadata_path"]).read_text()) == meta_before


def test_two_instances_side_by_side_and_a_taken_port(dms_process: Callable[..., DmsProcess]) -> None:
    a = dms_process("a").start()
    b = dms_process("b").start()
    onboard(a, 0.3, "nunet-test")
    onboard(b, 0.6, "nunet-team")
    sa, sb = a.get("/api/v1/onboarding/status"), b.get("/api/v1/onboarding/status")
    assert (sa["channel"], sb["channel"]) == ("nunet-test", "nunet-team")
    assert sa["database_path"] != sb["database_path"]

    # A third instance on a's port refuses to start, says why in one line, and a keeps serving.
    c = dms_process("c", port=a.port)
    proc = c.spawn()
    assert proc.wait(timeout=30) == 1
    err = c.log().strip().splitlines()[-1]
    assert err.startswith("nunet-dms: cannot start:")
    assert f"127.0.0.1:{a.port} is already in use" in err
    assert str(c.config) in err
    assert a.get("/api/v1/onboarding/status") == sa


def test_sigterm_exits_zero(dms_process: Callable[..., DmsProcess]) -> None:
    d = dms_process().start()
    assert d.terminate() == 0
    assert "stopped" in d.log()


def test_refuses_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = write_config(tmp_path / "c.json", blocker / "data", free_port())
    out = subprocess.run([*DAEMON, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "data dir" in out.stderr and "not writable" in out.stderr and "general.data_dir" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_invalid_config_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"rest": {"port": 70000}, "p2p": {"mdns": "sometimes"}}))
    out = subprocess.run([*DAEMON, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert str(cfg) in out.stderr and "rest.port" in out.stderr and "p2p.mdns" in out.stderr

    cfg.write_text('{"rest": {"port": 9999,}}')
    out = subprocess.run([*DAEMON, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "not valid JSON" in out.stderr and "line 1" in out.stderr

    out = subprocess.run([*DAEMON, "--config", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert out.returncode == 2 and "missing.json" in out.stderr and "not found" in out.stderr


def test_config_from_env_and_search_path(tmp_path: Path) -> None:
    """$DMS_CONFIG is found without --config, and DMS_* variables override the file."""
    port = free_port()
    cfg = write_config(tmp_path / "env.json", tmp_path / "data", 1)  # port 1 would fail; the env wins
    env = {**os.environ, "DMS_CONFIG": str(cfg), "DMS_REST__PORT": str(port)}
    proc = subprocess.Popen(DAEMON, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/onboarding/status", timeout=5) as r:
                    assert json.load(r)["database_path"].startswith(str(tmp_path / "data"))
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_tells_systemd_ready_and_pings_the_watchdog(tmp_path: Path) -> None:
    """The sd_notify protocol over a real datagram socket, as systemd reads it."""
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    cfg = write_config(tmp_path / "c.json", tmp_path / "data", free_port())
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen([*DAEMON, "--config", str(cfg)], env=env, stderr=subprocess.DEVNULL)
    try:
        got: list[str] = []
        while got.count("WATCHDOG=1") < 3:
            got.append(sock.recv(4096).decode())
        assert got[0].split("\n")[0] == "READY=1" and "STATUS=serving REST on" in got[0]
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in got:
            got.append(sock.recv(4096).decode())
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        sock.close()
