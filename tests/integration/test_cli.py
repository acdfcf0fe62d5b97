"""The `nunet` CLI against real daemon processes: what it prints, what it changes, how it fails."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import PAYOUT
from tests.procs import CLI, DmsProcess, free_port, run_cli, write_config

Factory = Callable[..., DmsProcess]


def half(d: DmsProcess) -> tuple[int, int]:
    """A valid reservation: 50 % of the machine's CPU (MHz) and memory (MB)."""
    total = d.get("/api/v1/onboarding/provisioned")
    return total["cpu"] // 2, total["memory"] // 2


def onboard(d: DmsProcess, cpu: int, memory: int, channel: str = "nunet-test") -> subprocess.CompletedProcess[str]:
    return run_cli("onboard", "-c", str(cpu), "-m", str(memory), "-n", channel, "-a", PAYOUT, "-x", "7", dms=d.url)


def row(output: str, label: str, *values: object) -> bool:
    """Whether a table row `label  v1  v2 ...` appears in the output."""
    pattern = r"\s+".join([re.escape(label), *(re.escape(str(v)) for v in values)])
    return re.search(pattern + r"(\s|$)", output) is not None


def test_onboard_then_info_shows_the_reservation(dms_process: Factory) -> None:
    d = dms_process().start()
    cpu, memory = half(d)
    done = onboard(d, cpu, memory)
    assert done.returncode == 0, done.stderr
    assert "Onboarded on channel nunet-test" in done.stdout

    info = run_cli("info", dms=d.url)
    assert info.returncode == 0, info.stderr
    assert row(info.stdout, "Channel", "nunet-test")
    assert row(info.stdout, "Payout address", PAYOUT)
    assert row(info.stdout, "Price", "7 wei")
    assert row(info.stdout, "CPU (MHz)", cpu, cpu)  # reserved, free
    assert row(info.stdout, "Memory (MB)", memory, memory)
    assert "online: accepting jobs" in info.stdout
    assert "metadataV2.json" in info.stdout


def test_capacity_views(dms_process: Factory) -> None:
    d = dms_process().start()
    total = d.get("/api/v1/onboarding/provisioned")
    full = run_cli("capacity", "--full", dms=d.url)
    assert full.returncode == 0, full.stderr
    assert row(full.stdout, "Cores", total["total_cores"])
    assert row(full.stdout, "CPU (MHz)", total["cpu"])

    every = run_cli("capacity", dms=d.url)
    assert every.returncode == 0, every.stderr
    assert "Not onboarded" in every.stdout
    reserved = run_cli("capacity", "--onboarded", dms=d.url)
    assert reserved.returncode == 1
    assert "not onboarded" in reserved.stderr

    cpu, memory = half(d)
    assert onboard(d, cpu, memory).returncode == 0
    every = run_cli("capacity", dms=d.url)
    assert row(every.stdout, "CPU (MHz)", total["cpu"], cpu, cpu)  # full, onboarded, available
    assert row(every.stdout, "Memory (MB)", total["memory"], memory, memory)


def test_device_set_offline(dms_process: Factory) -> None:
    d = dms_process().start()
    assert onboard(d, *half(d)).returncode == 0
    done = run_cli("device", "set", "offline", dms=d.url)
    assert done.returncode == 0, done.stderr
    status = run_cli("device", "status", dms=d.url)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("offline")
    assert d.get("/api/v1/device/status") == {"online": False, "is_available": False}
    assert run_cli("device", "set", "available", dms=d.url).returncode == 0
    assert d.get("/api/v1/device/status") == {"online": True, "is_available": True}


def test_resource_config_changes_the_reservation(dms_process: Factory) -> None:
    d = dms_process().start()
    cpu, memory = half(d)
    assert onboard(d, cpu, memory).returncode == 0
    done = run_cli("resource-config", "-c", str(cpu - 100), dms=d.url)
    assert done.returncode == 0, done.stderr
    reserved = d.get("/api/v1/onboarding/status")["reserved"]
    assert (reserved["cpu"], reserved["memory"]) == (cpu - 100, memory)  # memory not given: unchanged
    disk = d.get("/api/v1/onboarding/provisioned")["disk"] // 2
    done = run_cli("resource-config", "--disk", str(disk), dms=d.url)
    assert done.returncode == 0, done.stderr
    assert row(done.stdout, "Disk (MB)", disk, disk)  # reserved, free
    assert d.get("/api/v1/onboarding/status")["reserved"]["disk"] == disk

    nothing = run_cli("resource-config", dms=d.url)
    assert nothing.returncode == 2
    assert "at least one of" in nothing.stderr


def test_offboard(dms_process: Factory) -> None:
    d = dms_process().start()
    assert onboard(d, *half(d)).returncode == 0
    # Without -y and with no terminal to confirm on: refused, nothing changes.
    unconfirmed = subprocess.run(
        [*CLI, "--dms", d.url, "offboard"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    assert d.get("/api/v1/onboarding/status")["onboarded"] is True

    done = run_cli("offboard", "-y", dms=d.url)
    assert done.returncode == 0, done.stderr
    info = run_cli("info", dms=d.url)
    assert info.returncode == 1
    assert "not onboarded" in info.stderr


def test_daemon_errors_are_printed_and_nothing_is_stored(dms_process: Factory) -> None:
    d = dms_process().start()
    cpu, memory = half(d)
    too_small = onboard(d, 1, memory)
    assert too_small.returncode == 1
    assert too_small.stderr.startswith("Error: cpu: 1 MHz is outside the allowed reservation")
    assert "Traceback" not in too_small.stderr

    unknown = onboard(d, cpu, memory, channel="nunet-nowhere")
    assert unknown.returncode == 1
    assert "Error: channel: unknown channel 'nunet-nowhere'" in unknown.stderr
    assert d.get("/api/v1/onboarding/status")["onboarded"] is False


def test_daemon_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    down = run_cli("info", dms=url)
    assert down.returncode == 1
    assert f"cannot reach nunet-dms at {url} (from --dms)" in down.stderr
    assert "Traceback" not in down.stderr + down.stdout

    config = write_config(tmp_path / "dms.json", tmp_path / "data", free_port())
    down = run_cli("--config", str(config), "capacity")
    assert down.returncode == 1
    assert f"from rest.addr/rest.port in {config}" in down.stderr

    version = run_cli("version", dms=url)  # the CLI's version is shown anyway
    assert version.returncode == 0, version.stderr
    assert row(version.stdout, "nunet", "0.1.0")
    assert "cannot reach" in version.stdout


def test_config_file_finds_the_daemon(dms_process: Factory) -> None:
    d = dms_process().start()
    found = run_cli("--config", str(d.config), "capacity", "--full")
    assert found.returncode == 0, found.stderr
    assert row(found.stdout, "Cores", d.get("/api/v1/onboarding/provisioned")["total_cores"])
    version = run_cli("--config", str(d.config), "version")
    assert f"at {d.url}" in version.stdout


def test_bad_arguments_are_usage_errors() -> None:
    bad_number = run_cli("onboard", "-m", "notanumber", "-c", "1000", "-n", "nunet-test", "-a", PAYOUT)
    assert bad_number.returncode == 2
    assert "--memory" in bad_number.stderr
    assert run_cli("device", "set", "sideways").returncode == 2
    assert run_cli("onboard", "-m", "1", "-c", "1", "-n", "nunet-test", "-a", PAYOUT, "--gpus", "x").returncode == 2
    assert run_cli("--dms", "localhost:9999", "info").returncode == 2
