"""`nunet`: the command-line client of nunet-dms, with NuNet's command names, over the daemon's REST API.

Expected failures (daemon down, the daemon refusing a request, a bad config) print `Error: ...` on
stderr and exit 1; a bad argument is a usage error (exit 2). Neither prints a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dms import __version__
from dms.cli import jobs
from dms.cli.artifacts import artifact_app
from dms.cli.lazy import lazy_module
from dms.cli.modules import module_app
from dms.cli.peers import peer_app
from dms.cli.target import URL_ENV, Target

# Loaded on first use: `nunet --help` answers without rich's tables, the HTTP client or the config's models.
if TYPE_CHECKING:
    from dms import config
    from dms.cli import client as cli_client
    from dms.cli import render
    from dms.cli.client import DmsClient
else:
    config, cli_client = lazy_module("dms.config"), lazy_module("dms.cli.client")
    render = lazy_module("dms.cli.render")

NOT_ONBOARDED = "this machine is not onboarded; onboard it first (nunet onboard)"
STATES = {
    **dict.fromkeys(("online", "true", "available"), True),
    **dict.fromkeys(("offline", "false", "unavailable"), False),
}

app = typer.Typer(
    name="nunet",
    help="Manage this machine's NuNet device management service.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: typer's rich help costs ~0.1 s of imports
)
wallet_app = typer.Typer(
    help="Payout wallets (Ethereum or Cardano) and this node's own EVM wallet.", no_args_is_help=True
)
device_app = typer.Typer(help="Whether this machine accepts jobs.", no_args_is_help=True)
app.add_typer(wallet_app, name="wallet")
app.add_typer(device_app, name="device")
app.add_typer(peer_app, name="peer")
app.add_typer(module_app, name="module")
app.add_typer(artifact_app, name="artifact")

MemoryOpt = Annotated[int, typer.Option("--memory", "-m", metavar="MB", help="Memory to reserve, in MB.")]
CpuOpt = Annotated[int, typer.Option("--cpu", "-c", metavar="MHz", help="CPU to reserve, in MHz (cores x clock).")]
GpusOpt = Annotated[
    str | None, typer.Option("--gpus", metavar="0,1", help="GPU indexes to offer, comma separated, or none.")
]


@app.callback()
def main(
    ctx: typer.Context,
    dms: Annotated[
        str | None,
        typer.Option(
            "--dms",
            envvar=URL_ENV,
            metavar="URL",
            help="The daemon's URL, e.g. http://127.0.0.1:9999 (default: rest.addr/rest.port of the config).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            exists=True,
            dir_okay=False,
            help="The daemon's config file (default: nunet-dms's search path).",
        ),
    ] = None,
) -> None:
    if dms is not None and not dms.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{dms!r}: expected http://HOST:PORT", param_hint="'--dms'")
    source = ctx.get_parameter_source("dms")
    from_env = source is not None and source.name == "ENVIRONMENT"
    ctx.obj = Target(dms, f"from ${URL_ENV}" if from_env else "from --dms", config)


def client_of(ctx: typer.Context) -> DmsClient:
    target: Target = ctx.obj
    return target.client()


def parse_gpus(raw: str) -> list[int]:
    if raw.strip().lower() in ("", "none"):
        return []
    try:
        return [int(part) for part in raw.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{raw!r}: expected indexes such as 0,1 (or none)", param_hint="'--gpus'") from None


@app.command()
def capacity(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", "-f", help="The machine's total resources.")] = False,
    onboarded: Annotated[bool, typer.Option("--onboarded", "-o", help="What is reserved for the network.")] = False,
    available: Annotated[bool, typer.Option("--available", "-a", help="What jobs leave free of it.")] = False,
) -> None:
    """Show the machine's resources: total, reserved for the network, free (all three by default)."""
    client = client_of(ctx)
    if not (full or onboarded or available):
        full = onboarded = available = True
    columns: dict[str, render.Column] = {}
    if full:
        columns["Full (machine)"] = render.provisioned_column(client.get("/onboarding/provisioned"))
    status = client.get("/onboarding/status") if onboarded or available else None
    if status is not None and status["onboarded"]:
        if onboarded:
            columns["Onboarded (reserved)"] = render.resources_column(status["reserved"])
        if available:
            columns["Available (free)"] = render.resources_column(status["free"])
    not_onboarded = status is not None and not status["onboarded"]
    if not_onboarded and not columns:
        render.error(NOT_ONBOARDED)
        raise typer.Exit(1)
    render.out.print(render.resources_table(columns))
    if not_onboarded:
        render.line("Not onboarded: nothing is reserved for the network (nunet onboard).")


@wallet_app.command("new")
def wallet_new(
    ctx: typer.Context,
    ethereum: Annotated[bool, typer.Option("--ethereum", "-e", help="An Ethereum key pair (the default).")] = False,
    cardano: Annotated[bool, typer.Option("--cardano", "-c", help="A Cardano wallet: address and mnemonic.")] = False,
) -> None:
    """Make a new payout wallet: Ethereum (address and private key) or Cardano (address and 24 words)."""
    if ethereum and cardano:
        raise typer.BadParameter("choose one of --ethereum (-e) and --cardano (-c)", ctx=ctx)
    chain = "cardano" if cardano else "ethereum"
    made = client_of(ctx).get("/onboarding/address/new", blockchain=chain)
    secret = ("Mnemonic", made["mnemonic"]) if cardano else ("Private key", made["private_key"])
    render.out.print(render.fields_table([("Address", made["address"]), secret]))
    render.line(
        f"The {secret[0].lower()} is shown this once and is not stored anywhere: write it down and keep it secret. "
        "Whoever has it controls the address's funds.",
        style="bold yellow",
    )


@wallet_app.command("show")
def wallet_show(ctx: typer.Context) -> None:
    """Show this node's own EVM address: as service provider it settles escrows and needs gas there."""
    w = client_of(ctx).get("/wallet")
    render.out.print(render.fields_table([("Address", w["address"]), ("Payments", w["payment_mode"]),
                                          ("Key file", w["key_file"])]))  # fmt: skip
    render.line("Fund this address with enough for gas to release and refund escrows.")


@app.command()
def onboard(
    ctx: typer.Context,
    memory: MemoryOpt,
    cpu: CpuOpt,
    channel: Annotated[
        str, typer.Option("--channel", "-n", "--nunet-channel", metavar="NAME", help="The channel to join.")
    ],
    address: Annotated[
        str,
        typer.Option(
            "--address", "-a", metavar="ADDR", help="Payout address: Ethereum (for escrow) or Cardano (addr1...)."
        ),
    ],
    ntx_price: Annotated[
        int, typer.Option("--ntx-price", "-x", metavar="WEI", help="Price, wei per second per 1,000 MHz.")
    ] = 0,
    gpus: GpusOpt = None,
    unavailable: Annotated[bool, typer.Option("--unavailable", help="Do not accept jobs yet.")] = False,
    cardano: Annotated[
        bool, typer.Option("--cardano", "-C", help="NuNet's flag for a Cardano node (accepted; dms runs none).")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local-enable", "-l", help="NuNet's flag: a node for a local network (server_mode off).")
    ] = False,
    disk: Annotated[
        int | None, typer.Option("--disk", metavar="MB", help="Disk to reserve for jobs (default: 10 %).")
    ] = None,
) -> None:
    """Reserve resources for the network and join a channel."""
    body = {
        "memory": memory,
        "cpu": cpu,
        "channel": channel,
        "payment_addr": address,
        "ntx_price": ntx_price,
        "gpus": [] if gpus is None else parse_gpus(gpus),
        "is_available": not unavailable,
        "cardano": cardano,
        "server_mode": not local,
        **({} if disk is None else {"disk": disk}),
    }
    status = client_of(ctx).post("/onboarding/onboard", body)
    render.line(f"Onboarded on channel {status['channel']}.", style="bold green")
    render.onboarding(status)


@app.command()
def info(ctx: typer.Context) -> None:
    """Show how this machine is onboarded: channel, payout, price, reservation, availability."""
    client = client_of(ctx)
    status = client.get("/onboarding/status")
    if not status["onboarded"]:
        render.error(NOT_ONBOARDED)
        raise typer.Exit(1)
    meta = client.get("/onboarding/metadata")
    paths = [("Metadata file", status["metadata_path"]), ("Database", status["database_path"])]
    render.onboarding(status, [("Node name", meta["name"]), *paths])


@app.command("resource-config")
def resource_config(
    ctx: typer.Context,
    memory: Annotated[int | None, typer.Option("--memory", "-m", metavar="MB", help="New memory, MB.")] = None,
    cpu: Annotated[int | None, typer.Option("--cpu", "-c", metavar="MHz", help="New CPU, MHz.")] = None,
    gpus: GpusOpt = None,
    disk: Annotated[int | None, typer.Option("--disk", metavar="MB", help="New disk, MB.")] = None,
) -> None:
    """Change the reservation; options not given stay as they are."""
    given = {"memory": memory, "cpu": cpu, "gpus": None if gpus is None else parse_gpus(gpus), "disk": disk}
    body = {k: v for k, v in given.items() if v is not None}
    if not body:
        ctx.fail("give at least one of --memory, --cpu, --disk, --gpus")
    status = client_of(ctx).post("/onboarding/resource-config", body)
    render.line("Reservation changed.", style="bold green")
    render.out.print(render.reservation_table(status))


@app.command()
def offboard(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", "-f", help="Offboard even while jobs run.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Leave the network and forget the onboarding (the reservation, channel and price)."""
    if not yes:
        if not sys.stdin.isatty():
            ctx.fail("not asking for confirmation: stdin is not a terminal; pass --yes to offboard")
        typer.confirm("Offboard this machine? It stops taking jobs and forgets its onboarding.", abort=True)
    client_of(ctx).delete("/onboarding/offboard", force=str(force).lower())
    render.line("Offboarded.", style="bold green")


@device_app.command("status")
def device_status(ctx: typer.Context) -> None:
    """Show whether this machine accepts jobs."""
    render.line(render.availability(client_of(ctx).get("/device/status")["online"]))


@device_app.command("set")
def device_set(
    ctx: typer.Context,
    state: Annotated[str, typer.Argument(metavar="online|offline", help="Also: true/false, available/unavailable.")],
) -> None:
    """Accept jobs (online) or stop accepting them (offline)."""
    wanted = STATES.get(state.lower())
    if wanted is None:
        raise typer.BadParameter(f"{state!r}: expected online or offline", ctx=ctx, param_hint="STATE")
    reply = client_of(ctx).post("/device/status", {"is_available": wanted})
    render.line(render.availability(reply["is_available"]))


@app.command()
def version(ctx: typer.Context) -> None:
    """Show the CLI's version and, when it answers, the daemon's."""
    try:
        client = client_of(ctx)
        daemon = f"{client.get('/openapi.json')['info']['version']} at {client.base_url}"
    except (cli_client.ApiError, cli_client.DaemonUnreachable, config.ConfigError) as exc:
        daemon = f"unknown: {str(exc).splitlines()[0]}"
    render.out.print(render.fields_table([("nunet", __version__), ("nunet-dms", daemon)]))


app.command(context_settings={"allow_interspersed_args": False})(jobs.run)
app.command("jobs")(jobs.jobs)
app.command("job")(jobs.job)
app.command("cancel")(jobs.cancel)
app.command("resume")(jobs.resume)
app.command("transactions")(jobs.transactions)


def run() -> None:
    """The `nunet` entry point: expected failures become `Error: ...` and exit 1, with no traceback."""
    try:
        app(prog_name="nunet")
    except SystemExit:
        raise  # every command ends here: the clauses below would load what they name
    except cli_client.ApiError as exc:
        render.error(exc.message, exc.details)
        sys.exit(1)
    except cli_client.DaemonUnreachable as exc:
        render.error(str(exc))
        sys.exit(1)
    except config.ConfigError as exc:
        render.error(f"invalid configuration: {exc}")
        sys.exit(1)
