"""Fast checks of debian/ against the code it packages (no build, no Docker): versions, config, man page, unit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from dms import __version__
from dms.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "debian"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (DEBIAN / "nunet-dms.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_changelog_version_is_the_package_version() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.match(r"nunet-dms \(([^)]+)\)", first)
    assert match, first
    # Native package: the Debian version is the project's, plus at most a +suffix for a rebuild.
    assert match.group(1).split("+")[0] == __version__


def test_packaged_config_is_the_repos_with_service_values() -> None:
    out = subprocess.run(
        [sys.executable, str(DEBIAN / "make-config.py"), str(ROOT / "dms_config.json")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packaged = json.loads(out)
    repo = json.loads((ROOT / "dms_config.json").read_text())
    assert packaged["general"]["data_dir"] == "/var/lib/nunet"
    assert (packaged["rest"]["addr"], packaged["rest"]["port"]) == ("127.0.0.1", 9999)
    assert packaged["p2p"]["mdns"] is False
    assert packaged["p2p"]["listen_address"] == repo["p2p"]["listen_address"]
    assert {k: set(v) for k, v in packaged.items()} == {k: set(v) for k, v in repo.items()}


def cli_commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf commands by path ("wallet new"); typer's command objects (its own click) are duck-typed."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found |= cli_commands(command, f"{prefix}{name} ")
        else:
            found[f"{prefix}{name}"] = command
    return found


def test_man_page_documents_every_command_and_option() -> None:
    # roff: "\-" is a hyphen, "\fB" and friends switch fonts.
    page = re.sub(r"\\f[BIRP]", "", (DEBIAN / "nunet.1").read_text()).replace("\\-", "-")
    root = typer.main.get_command(app)
    missing = []
    for path, command in cli_commands(root).items():
        if not re.search(rf"^\.B {re.escape(path)}\b", page, re.MULTILINE):
            missing.append(path)
        for param in command.params:
            missing += [f"{path} {opt}" for opt in param.opts if opt.startswith("--") and opt not in page]
    for param in root.params:
        missing += [opt for opt in param.opts if opt.startswith("--") and opt not in page]
    assert not missing, f"not in debian/nunet.1: {missing}"


def test_unit_has_the_service_contract() -> None:
    unit = unit_settings()
    expected = {
        "Type": "notify",
        "ExecStart": "/usr/bin/nunet-dms --config /etc/nunet/dms_config.json",
        "User": "nunet",
        "SupplementaryGroups": "docker",
        "StateDirectory": "nunet",
        "Restart": "on-failure",
        "WatchdogSec": "30s",
        "TimeoutAbortSec": "10s",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "MemoryDenyWriteExecute": "yes",
    }
    assert {k: unit.get(k, [None])[-1] for k in expected} == expected
    assert "@system-service" in unit["SystemCallFilter"]


def test_every_lintian_override_says_why() -> None:
    lines = (DEBIAN / "nunet-dms.lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("nunet-dms:"):
            above = next((prev for prev in reversed(lines[:i]) if not prev.startswith("nunet-dms:")), "")
            assert above.startswith("# "), f"override without a reason above it: {line}"
