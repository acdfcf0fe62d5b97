"""`nunet run`, `jobs`, `job`, `cancel`: a service provider's jobs, from the terminal.

`run` does what a dashboard does: asks for a quote over REST, confirms payment on the websocket
(`send-status`), then prints every frame as it comes; it exits with the job's own exit code. In escrow mode
it pays the deposit, and the deposit of each run that resumes the job after its provider was lost
(`job-resume-quote`, docs/artifacts.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dms.cli.lazy import lazy_module

if TYPE_CHECKING:
    from rich import table as rich_table
    from rich import text as rich_text

    from dms.cli import client as cli_client
    from dms.cli import render
    from dms.cli.client import DmsClient
    from dms.cli.target import Target
else:
    rich_table, rich_text = lazy_module("rich.table"), lazy_module("rich.text")
    cli_client, render = lazy_module("dms.cli.client"), lazy_module("dms.cli.render")

WS_PATH = "/api/v1/run/deploy"


# Options `run` and `resume` share: both follow a job to its end and may pay its deposit.
FramesOpt = Annotated[bool, typer.Option("--frames", help="Also print every websocket frame as JSON.")]
PayKeyOpt = Annotated[
    str | None, typer.Option("--pay-key", envvar="NUNET_PAY_KEY", help="Private key that pays the escrow deposit.")
]
RpcUrlOpt = Annotated[
    str | None, typer.Option("--rpc-url", envvar="NUNET_RPC_URL", help="The chain's JSON-RPC URL (escrow).")
]


def _client(ctx: typer.Context) -> DmsClient:
    target: Target = ctx.obj
    return target.client()


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="'--env'")
        env[key] = value
    return env


def run(
    ctx: typer.Context,
    command: Annotated[list[str] | None, typer.Argument(help="The command and its arguments (after --).")] = None,
    image: Annotated[str, typer.Option("--image", "-i", help="Container image, present on the provider.")] = (
        "dms-test/busybox:1"
    ),
    cpu: Annotated[int, typer.Option("--cpu", "-c", metavar="MHz", help="CPU to reserve, MHz.")] = 500,
    cores: Annotated[float, typer.Option("--cores", help="CPU limit in cores (fractional allowed).")] = 0.5,
    memory: Annotated[int, typer.Option("--memory", "-m", metavar="MB", help="Memory limit, MB.")] = 256,
    disk: Annotated[int, typer.Option("--disk", metavar="MB", help="The job's writable /workspace, MB.")] = 64,
    gpus: Annotated[int, typer.Option("--gpus", help="Number of GPUs.")] = 0,
    vram: Annotated[int, typer.Option("--vram", metavar="MB", help="Minimum VRAM per GPU, MB.")] = 0,
    duration: Annotated[int, typer.Option("--duration", "-d", metavar="S", help="Paid run time, seconds.")] = 600,
    max_price: Annotated[int, typer.Option("--max-price", metavar="WEI", help="The most it may cost.")] = 10**18,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", metavar="KEY=VALUE", help="Environment.")] = None,
    target_peer: Annotated[str | None, typer.Option("--peer", help="Run on this provider only.")] = None,
    wasm: Annotated[
        str | None, typer.Option("--wasm", metavar="MODULE", help="Run this WASM module (name or sha256) instead.")
    ] = None,
    fuel: Annotated[
        int | None, typer.Option("--fuel", metavar="N", help="With --wasm: an instruction budget (wasmtime fuel).")
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            metavar="SOURCE=PATH",
            help="A file for /inputs/PATH: a local file (uploaded first), an artifact's sha256 or a URL.",
        ),
    ] = None,
    checkpoint_every: Annotated[
        float | None, typer.Option("--checkpoint-every", metavar="S", help="Snapshot /workspace every S seconds.")
    ] = None,
    resume_on_failure: Annotated[
        bool, typer.Option("--resume-on-failure", help="If its provider is lost, go on elsewhere from a checkpoint.")
    ] = False,
    frames: FramesOpt = False,
    pay_key: PayKeyOpt = None,
    rpc_url: RpcUrlOpt = None,
) -> None:
    """Run a container (or, with --wasm, a WASM module) on the best provider and follow it to the end;
    exit with its exit code."""
    client = _client(ctx)
    job: dict[str, Any] = {"image": image, "command": command or []}
    if wasm is not None:
        job = {"executor": "wasm", "module": client.get(f"/modules/{wasm}")["sha256"], "args": command or []}
        if fuel is not None:
            job["fuel"] = fuel
    body: dict[str, Any] = {
        **job,
        "env": parse_env(env or []),
        "resources": {
            "cpu_mhz": cpu,
            "cores": cores,
            "memory_mb": memory,
            "disk_mb": disk,
            "gpus": gpus,
            "vram_mb": vram,
        },
        "max_price": max_price,
        "duration_s": duration,
    }
    if target_peer:
        body["target_peer"] = target_peer
    if inputs:
        body["inputs"] = [job_input(client, x) for x in inputs]
    if checkpoint_every is not None:
        body["checkpoint"] = {"path": "/workspace", "interval_s": checkpoint_every}
    if resume_on_failure:
        body["resume"] = "on-failure"
    quote = client.post("/run/request-service", body)
    job_id = quote["job_id"]
    provider = quote["compute_provider"]["peer_id"]
    render.out.print(
        rich_text.Text(f"quote: job {job_id} on {provider} for {quote['estimated_price']} wei", style="bold"),
        soft_wrap=True,
    )
    pay_and_follow(client, quote, pay_key, rpc_url, frames)


def pay_and_follow(
    client: DmsClient, quote: dict[str, Any], pay_key: str | None, rpc_url: str | None, frames: bool
) -> NoReturn:
    """Deposit for the quote when the daemon takes escrow payments, then follow the job to its end and exit
    with its status."""
    tx_hash = None
    if quote.get("escrow_address"):
        if not pay_key or not rpc_url:
            render.error("this daemon takes escrow payments: give --pay-key and --rpc-url to pay the deposit")
            sys.exit(1)
        tx_hash = deposit(quote, pay_key, rpc_url)
        render.out.print(rich_text.Text(f"paid: deposit {tx_hash}", style="bold"), soft_wrap=True)
    job_id = quote["job_id"]
    sys.exit(follow(client, job_id, pay=True, raw=frames, tx_hash=tx_hash, payer=payer(pay_key, rpc_url)))


def payer(key: str | None, rpc_url: str | None) -> Callable[[dict[str, Any]], str] | None:
    """What pays a quote's deposit (None without a key and a chain)."""
    return (lambda quote: deposit(quote, key, rpc_url)) if key and rpc_url else None


def job_input(client: DmsClient, arg: str) -> dict[str, str]:
    """`SOURCE=PATH` as a job input; a SOURCE that is a local file is uploaded and named by its hash."""
    source, sep, path = arg.rpartition("=")
    if not sep or not source or not path:
        raise typer.BadParameter(f"{arg!r}: expected SOURCE=PATH", param_hint="'--input'")
    if "://" not in source and Path(source).is_file():
        source = client.upload_file("/artifacts", Path(source))["sha256"]
    return {"source": source, "path": path}


def deposit(quote: dict[str, Any], key: str, rpc_url: str) -> str:
    """Pay the quote into its escrow from `key`'s account, as a dashboard would; the tx hash."""
    from web3 import HTTPProvider, Web3

    from dms.payments.contract import load_artifact

    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    account = w3.eth.account.from_key(key)
    escrow = w3.eth.contract(address=quote["escrow_address"], abi=load_artifact().abi)
    fn = escrow.functions.deposit(
        bytes.fromhex(quote["escrow_job_id"].removeprefix("0x")),
        quote["compute_provider"]["payment_addr"],
        quote["arbiter"],
    )
    tx = fn.build_transaction(
        {
            "from": account.address,
            "value": quote["estimated_price"],
            "nonce": w3.eth.get_transaction_count(account.address),
        }
    )
    sent = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(sent, timeout=120)
    if receipt["status"] != 1:
        render.error(f"the deposit {sent.to_0x_hex()} reverted")
        sys.exit(1)
    return sent.to_0x_hex()


def follow(
    client: DmsClient,
    job_id: str,
    pay: bool,
    raw: bool = False,
    tx_hash: str | None = None,
    payer: Callable[[dict[str, Any]], str] | None = None,
) -> int:
    """Print the job's frames until its end; the exit code to leave with. `payer` pays the deposit of a run
    that resumes the job (`job-resume-quote`) and answers its tx hash."""  # fmt: skip
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    url = "ws" + client.base_url.removeprefix("http") + WS_PATH
    try:
        with connect(url, open_timeout=10, max_size=2**20) as ws:
            if pay:
                status: dict[str, Any] = {"transaction_type": "fund", "transaction_status": "success"}
                if tx_hash:
                    status["tx_hash"] = tx_hash
                ws.send(json.dumps({"action": "send-status", "job_id": job_id, "message": status}))
            else:
                ws.send(json.dumps({"action": "subscribe", "job_id": job_id}))
            for message in ws:
                frame = json.loads(message)
                if raw:
                    render.out.print(rich_text.Text(json.dumps(frame), style="dim"), soft_wrap=True)
                code = show(frame, job_id)
                if code is not None:
                    return code
                if frame.get("action") == "job-resume-quote" and frame.get("job_id") == job_id and payer:
                    tx = payer(frame["detail"]["quote"])
                    render.out.print(rich_text.Text(f"paid: deposit {tx} for run {frame['detail']['run']}",
                                                    style="bold"), soft_wrap=True)  # fmt: skip
                    paid = {"transaction_type": "fund", "transaction_status": "success", "tx_hash": tx}
                    ws.send(json.dumps({"action": "send-status", "job_id": job_id, "message": paid}))
    except (OSError, WebSocketException) as exc:
        raise cli_client.DaemonUnreachable(f"the websocket {url} failed: {exc}") from exc
    render.error("the daemon closed the websocket before the job ended")
    return 1


def show(frame: dict[str, Any], job_id: str) -> int | None:
    """Print one frame; the exit code once the job has ended."""
    action = frame.get("action")
    if frame.get("job_id") not in (None, job_id):
        return None
    if action == "error":
        render.error(str(frame.get("message")))
        return 1
    if action == "log-stream-response":
        # NuNet's frame: `stdout` or `stderr` at the top level, one stream per frame
        sys.stdout.write(str(frame.get("stdout", "")))
        sys.stderr.write(str(frame.get("stderr", "")))
        sys.stdout.flush()
        return None
    if action == "job-completed":
        render.line("job-completed", style="bold green")
        return 0
    if action == "job-failed":
        detail = frame.get("detail") or {}
        render.line(f"job-failed: {frame.get('message')}", style="bold red")
        code = detail.get("exit_code")
        return code if isinstance(code, int) and code != 0 else 1
    if action == "deployment-response":
        message = frame.get("message") or {}
        style = "green" if message.get("success") else "red"
        render.out.print(rich_text.Text(f"{action}: {message.get('content')}", style=style), soft_wrap=True)
        return None
    if action == "job-resume-quote":
        detail = frame.get("detail") or {}
        q = detail.get("quote") or {}
        where = (q.get("compute_provider") or {}).get("peer_id")
        render.line(f"{detail.get('reason')}: resuming on {where} needs a new deposit of {q.get('estimated_price')} "
                    f"wei (escrow job id {q.get('escrow_job_id')})", style="yellow")  # fmt: skip
        return None
    if action != "connected":
        render.line(str(action), style="cyan")
    return None


def jobs(ctx: typer.Context) -> None:
    """List this node's jobs as service provider, newest first."""
    rows = _client(ctx).get("/run/jobs")["jobs"]
    table = rich_table.Table("Job", "State", "Image", "Provider", "Exit", "Reason")
    for j in rows:
        table.add_row(
            j["job_id"], j["state"], j["image"] or f"wasm {j['module'][:12]}", (j.get("compute_provider") or "")[-12:],
            "" if j.get("exit_code") is None else str(j["exit_code"]), rich_text.Text(j.get("reason") or ""),
        )  # fmt: skip
    render.out.print(table)


def job(
    ctx: typer.Context,
    job_id: Annotated[
        str, typer.Argument(metavar="[get] JOB_ID", help="The job id; `get JOB_ID` downloads its outputs.")
    ],
    get_id: Annotated[str | None, typer.Argument(hidden=True)] = None,
    out: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="DIR", help="With `get`: unpack here (default ./JOB_ID).")
    ] = None,
) -> None:
    """Show one job; `nunet job get JOB_ID [-o DIR]` downloads and unpacks what it left in /outputs."""
    if job_id == "get" and get_id:
        get_outputs(_client(ctx), get_id, out or Path(get_id))
        return
    if get_id is not None or out is not None:
        raise typer.BadParameter("expected `nunet job JOB_ID` or `nunet job get JOB_ID [-o DIR]`")
    j = _client(ctx).get(f"/run/jobs/{job_id}")
    r = j["resources"]
    rows = [
        ("Job", j["job_id"]), ("State", j["state"]), ("Image", j["image"] or f"wasm {j['module']}"),
        ("Command", " ".join(j["command"])),
        ("Resources", f"{r['cpu_mhz']} MHz, {r['cores']} cores, {r['memory_mb']} MB"),
        ("Provider", j.get("compute_provider") or ""), ("Price", f"{j['estimated_price']} wei"),
        ("Exit code", "" if j.get("exit_code") is None else str(j["exit_code"])), ("Reason", j.get("reason") or ""),
        ("Created", render.when(j["created_at"])), ("Updated", render.when(j["updated_at"])),
    ]  # fmt: skip
    if j.get("outputs"):
        rows.append(("Outputs", f"{j['outputs']['sha256']} ({j['outputs']['size']} bytes; nunet job get {job_id})"))
    render.out.print(render.fields_table(rows))


def get_outputs(client: DmsClient, job_id: str, dest: Path) -> None:
    """Download the job's outputs tar and unpack it into `dest`, refusing entries that would leave it."""
    import tarfile
    import tempfile

    from dms.artifacts.tarball import UnsafeTar, extract

    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "outputs.tar"
        client.download(f"/run/jobs/{job_id}/outputs", tar_path)
        try:
            names = extract(tar_path, dest)
        except (UnsafeTar, tarfile.TarError) as exc:
            raise typer.BadParameter(f"the outputs of job {job_id} cannot be unpacked safely: {exc}") from None
    render.line(f"{len(names)} entries of job {job_id}'s outputs unpacked into {dest}", style="bold")


def resume(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="An ended job with checkpoints.")],
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", "-n", metavar="N", help="Its checkpoint N (default: the latest).")
    ] = None,
    frames: FramesOpt = False,
    pay_key: PayKeyOpt = None,
    rpc_url: RpcUrlOpt = None,
) -> None:
    """Run an ended job again from one of its checkpoints (a new job id), and follow it to the end."""
    client = _client(ctx)
    quote = client.post(f"/run/jobs/{job_id}/resume", {} if checkpoint is None else {"checkpoint": checkpoint})
    new_id = quote["job_id"]
    render.out.print(
        rich_text.Text(f"resuming {job_id} from checkpoint {quote['resumed_from']['checkpoint']} as job {new_id} "
             f"for {quote['estimated_price']} wei", style="bold"),
        soft_wrap=True,
    )  # fmt: skip
    pay_and_follow(client, quote, pay_key, rpc_url, frames)


def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="The job id.")]) -> None:
    """Cancel a job; a running container is stopped."""
    _client(ctx).post(f"/run/jobs/{job_id}/cancel")
    render.line(f"cancelling job {job_id}", style="bold")


def transactions(ctx: typer.Context) -> None:
    """Payments: deposits verified, releases and refunds sent, with their tx hashes."""
    rows = _client(ctx).get("/transactions")
    table = rich_table.Table("When", "Job", "Kind", "State", "Amount (wei)", "Tx")
    for t in rows:
        table.add_row(
            render.when(t["at"]), t["job_id"], t["kind"],
            rich_text.Text(t["state"] + (f": {t['error']}" if t["error"] else "")),
            t["amount"] or "", t["tx_hash"] or "",
        )  # fmt: skip
    render.out.print(table)
