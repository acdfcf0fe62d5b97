"""`nunet artifact put|get|list`: the daemon's artifact store (sha256-named blobs), from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dms.cli.lazy import lazy_module
from dms.cli.target import Target

if TYPE_CHECKING:
    from rich import table as rich_table

    from dms.cli import render
    from dms.cli.client import DmsClient
else:
    render, rich_table = lazy_module("dms.cli.render"), lazy_module("rich.table")

artifact_app = typer.Typer(help="Files stored by sha256: job inputs, outputs, checkpoints.", no_args_is_help=True)


def _client(ctx: typer.Context) -> DmsClient:
    target: Target = ctx.find_root().obj
    return target.client()


@artifact_app.command("put")
def put(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The file to store.")],
) -> None:
    """Store a file; prints its sha256 (a job's `inputs` can name it)."""
    art = _client(ctx).upload_file("/artifacts", file)
    render.out.print(f"{art['sha256']}  {art['size']} bytes")


@artifact_app.command("get")
def get(
    ctx: typer.Context,
    sha256: Annotated[str, typer.Argument(help="The artifact's sha256.")],
    out: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Default: ./SHA256.")] = None,
) -> None:
    """Download an artifact into a file."""
    dest = out or Path(sha256)
    _client(ctx).download(f"/artifacts/{sha256}", dest)
    render.line(f"{dest}: {dest.stat().st_size} bytes")


@artifact_app.command("list")
def list_artifacts(ctx: typer.Context) -> None:
    """The artifacts on this node, most recently used first, and the store's use."""
    reply = _client(ctx).get("/artifacts")
    table = rich_table.Table("sha256", "Size (bytes)")
    for a in reply["artifacts"]:
        table.add_row(a["sha256"], str(a["size"]))
    render.out.print(table)
    render.line(f"{reply['used']} of {reply['quota']} bytes used")
