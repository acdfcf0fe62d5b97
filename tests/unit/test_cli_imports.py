"""`nunet --help` answers fast because it loads only what help needs: not rich's tables, not the HTTP client,
not the config's pydantic models, not web3 (bench/cli.py measures the time; this test guards the cause)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "rich.table", "rich.console", "http.client", "pydantic", "pydantic_settings", "dms.config", "web3", "aiohttp",
    "websockets",
)  # fmt: skip

PROBE = """
import json, sys
sys.argv = ["nunet", *ARGS]
from dms.cli.main import run
try:
    run()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in HEAVY if m in sys.modules and type(sys.modules[m]).__name__ == "module")))
"""


def loaded_by(*args: str) -> list[str]:
    code = PROBE.replace("ARGS", repr(list(args))).replace("HEAVY", repr(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_help_loads_nothing_heavy() -> None:
    assert loaded_by("--help") == []
    assert loaded_by("peer", "--help") == []


def test_a_usage_error_loads_nothing_heavy() -> None:
    assert loaded_by("--dms", "not-a-url", "info") == []
