"""dms's `nunet` CLI also takes NuNet's flags and spellings, so NuNet's documentation works with it."""

from __future__ import annotations

from collections.abc import Callable

from tests.nunet.test_routes import ADA
from tests.procs import DmsProcess, run_cli


def test_nunets_flags(dms_process: Callable[..., DmsProcess]) -> None:
    d = dms_process().start()
    ada = run_cli("wallet", "new", "-c", dms=d.url)
    assert ada.returncode == 0 and "addr1" in ada.stdout and "Mnemonic" in ada.stdout, ada.stderr
    eth = run_cli("wallet", "new", "-e", dms=d.url)
    assert eth.returncode == 0 and "0x" in eth.stdout and "Private key" in eth.stdout, eth.stderr

    total = d.get("/api/v1/onboarding/provisioned")
    cpu, memory = total["cpu"] // 2, total["memory"] // 2
    argv = ["onboard", "-m", str(memory), "-c", str(cpu), "--nunet-channel", "nunet-test", "-a", ADA, "-l"]
    done = run_cli(*argv, dms=d.url)
    assert done.returncode == 0, done.stderr
    meta = d.get("/api/v1/onboarding/metadata")
    assert meta["public_key"] == ADA and meta["reserved"] == {"cpu": cpu, "memory": memory}

    for flag, shows in (("-f", str(total["cpu"])), ("-o", str(cpu)), ("-a", str(cpu))):
        out = run_cli("capacity", flag, dms=d.url)
        assert out.returncode == 0 and shows in out.stdout, (flag, out.stdout, out.stderr)

    assert run_cli("device", "set", "offline", dms=d.url).returncode == 0
    assert d.get("/api/v1/device/status")["online"] is False
    assert "offline" in run_cli("device", "status", dms=d.url).stdout.lower()

    gone = run_cli("offboard", "-f", "--yes", dms=d.url)
    assert gone.returncode == 0, gone.stderr
    assert d.get("/api/v1/onboarding/status")["onboarded"] is False
