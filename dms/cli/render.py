"""How the CLI shows things: rich tables on stdout, errors on stderr. Rich honours NO_COLOR by itself.

Values from the daemon go in as `Text`, never as markup, so a `[` in a message or a name prints as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)

# Rows of a resources table, in order; a column fills only those it knows.
CPU, CORES, MEMORY, DISK, GPUS = "CPU (MHz)", "Cores", "Memory (MB)", "Disk (MB)", "GPUs"
ROWS = (CPU, CORES, MEMORY, DISK, GPUS)
Column = dict[str, str]


def error(message: str, details: Any = None) -> None:
    """`Error: message`, then one line per field problem when the daemon listed them.

    Lines are not wrapped, so a URL or a path in a message stays whole, to copy or grep.
    """
    err.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    problems = [
        f"{d['field']}: {d['message']}"
        for d in details or []
        if isinstance(d, dict) and {"field", "message"} <= d.keys()
    ]
    if problems != [message]:  # one problem is the whole message already
        for problem in problems:
            err.print(Text(f"  {problem}"), soft_wrap=True)


def line(text: str, style: str = "") -> None:
    out.print(Text(text, style=style))


def provisioned_column(p: Mapping[str, Any]) -> Column:
    gpus = [f"{g['index']}: {g['vendor']} {g['model']} ({g['vram_mb']} MB)" for g in p["gpus"]]
    return {
        CPU: str(p["cpu"]),
        CORES: str(p["total_cores"]),
        MEMORY: str(p["memory"]),
        DISK: str(p["disk"]),
        GPUS: "\n".join(gpus) or "none",
    }


def resources_column(r: Mapping[str, Any]) -> Column:
    column = {CPU: str(r["cpu"]), MEMORY: str(r["memory"]), GPUS: gpu_indexes(r["gpus"])}
    return column | ({DISK: str(r["disk"])} if "disk" in r else {})


def gpu_indexes(gpus: Sequence[int]) -> str:
    return ", ".join(str(i) for i in gpus) or "none"


def resources_table(columns: Mapping[str, Column]) -> Table:
    """One row per resource, one column per view (full, reserved, free...); rows no view has are left out."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("Resource", style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    for row in ROWS:
        if any(row in col for col in columns.values()):
            table.add_row(row, *(Text(col.get(row, "-")) for col in columns.values()))
    return table


def fields_table(rows: Sequence[tuple[str, str]]) -> Table:
    """`Label  value` lines, aligned."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, Text(value))
    return table


def when(iso: str | None) -> str:
    """A timestamp from the daemon (ISO 8601, UTC) in the local time zone."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def availability(is_available: bool) -> str:
    return "online: accepting jobs" if is_available else "offline: not accepting jobs"


def onboarding(status: Mapping[str, Any], extra: Sequence[tuple[str, str]] = ()) -> None:
    """An onboarded node's terms and its reservation (what onboard, resource-config and info print)."""
    out.print(
        fields_table(
            [
                ("Channel", status["channel"]),
                ("Payout address", status["payment_addr"]),
                ("Price", f"{status['ntx_price']} wei per second per 1,000 MHz"),
                ("Device", availability(status["is_available"])),
                ("Onboarded at", when(status.get("onboarded_at"))),
                ("Updated at", when(status.get("updated_at"))),
                *extra,
            ]
        )
    )
    out.print(reservation_table(status))


def reservation_table(status: Mapping[str, Any]) -> Table:
    return resources_table({"Reserved": resources_column(status["reserved"]), "Free": resources_column(status["free"])})
