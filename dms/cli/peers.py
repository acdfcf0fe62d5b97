"""`nunet peer list [-d]`, `peer self`, `peer ping ID`: this node on the network, and its peers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dms.cli.lazy import lazy_module

if TYPE_CHECKING:
    from rich import table as rich_table
    from rich import text as rich_text

    from dms.cli import render
    from dms.cli.target import Target
else:
    rich_table, rich_text = lazy_module("rich.table"), lazy_module("rich.text")
    render = lazy_module("dms.cli.render")

peer_app = typer.Typer(help="This node on the peer-to-peer network, and its peers.", no_args_is_help=True)


def _get(ctx: typer.Context, path: str) -> Any:
    target: Target = ctx.obj
    return target.client().get(path)


def capacity_text(c: dict[str, Any]) -> str:
    gpus = ", ".join(f"{g['vendor']} {g['model']} {g['vram_mb']} MB" for g in c["gpus"]) or "no GPU"
    return f"{c['cpu_mhz']} MHz, {c['memory_mb']} MB, {c['cores']:g} cores, {gpus}"


@peer_app.command("list")
def peer_list(
    ctx: typer.Context,
    dht: Annotated[bool, typer.Option("--dht", "-d", help="Every known peer with its advertised capacity.")] = False,
) -> None:
    """Connected peers; with -d, every peer known on our channel and what it offers."""
    if not dht:
        table = rich_table.Table("Peer", "Addresses")
        for p in _get(ctx, "/peers"):
            table.add_row(p["peer_id"], rich_text.Text("\n".join(p["addrs"])))
        render.out.print(table)
        return
    table = rich_table.Table("Peer", "Free capacity", "Price (wei/s/1000 MHz)", "Executors", "RTT", "Age")
    for p in _get(ctx, "/peers/dht/dump"):
        c = p["capacity"]
        rtt = "" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f} ms"
        table.add_row(
            p["peer_id"], capacity_text(c), str(c["ntx_price"]), ", ".join(c["executors"]) or "none", rtt,
            f"{p['age_s']:.1f} s",
        )  # fmt: skip
    render.out.print(table)


@peer_app.command("self")
def peer_self(ctx: typer.Context) -> None:
    """This node's peer id, addresses, executor and what it advertises."""
    me = _get(ctx, "/peers/self")
    ex = me["executor"]
    rows = [
        ("Peer id", me["peer_id"]),
        ("Addresses", "\n".join(me["addrs"])),
        ("Executor", "docker: available" if ex["available"] else f"unavailable: {ex.get('reason')}"),
        ("Advertising", capacity_text(me["advert"]) if me.get("advert") else "nothing (not onboarded or offline)"),
    ]
    render.out.print(render.fields_table(rows))


@peer_app.command("ping")
def peer_ping(ctx: typer.Context, peer_id: Annotated[str, typer.Argument(help="The peer's id.")]) -> None:
    """Round-trip time to a peer."""
    reply = _get(ctx, f"/peers/ping/{peer_id}")
    render.line(f"{reply['peer_id']}: {reply['rtt_ms']:.2f} ms")
