"""`nunet module add|ls|rm`: the WASM modules in this node's registry (a job names one by name or sha256)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dms.cli.lazy import lazy_module

if TYPE_CHECKING:
    from rich import table as rich_table

    from dms.cli import render
    from dms.cli.target import Target
else:
    rich_table, render = lazy_module("rich.table"), lazy_module("dms.cli.render")

if TYPE_CHECKING:
    from rich import table as rich_table

    from dms.cli import render
else:
    render, rich_table = lazy_module("dms.cli.render"), lazy_module("rich.table")

module_app = typer.Typer(help="WASM modules this node can run or send with a job.", no_args_is_help=True)


def _target(ctx: typer.Context) -> Target:
    target: Target = ctx.find_root().obj
    return target


@module_app.command("add")
def add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .wasm binary or .wat text.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Its name (default: the file's stem).")] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What it does.")] = "",
) -> None:
    """Add a module to the registry; prints its sha256 and the WASI imports it asks for."""
    entry = (
        _target(ctx)
        .client()
        .upload("/modules", file.read_bytes(), "application/wasm", name=name or file.stem, description=description)
    )
    render.out.print(f"added {entry['name']}: sha256 {entry['sha256']}, {entry['size']} bytes", soft_wrap=True)
    render.out.print("imports: " + (", ".join(entry["imports"]) or "none"), soft_wrap=True)


@module_app.command("ls")
def ls(ctx: typer.Context) -> None:
    """List the modules in the registry."""
    rows = _target(ctx).client().get("/modules")["modules"]
    table = rich_table.Table("Name", "sha256", "Size", "Imports", "Description")
    for m in rows:
        table.add_row(m["name"], m["sha256"][:16], str(m["size"]), str(len(m["imports"])), m["description"])
    render.out.print(table)


@module_app.command("rm")
def rm(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="The module's name or sha256.")]) -> None:
    """Remove a module from the registry."""
    entry = _target(ctx).client().delete(f"/modules/{ref}")
    render.out.print(f"removed {entry['name']} ({entry['sha256']})", soft_wrap=True)
