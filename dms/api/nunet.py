"""NuNet's routes that have no other home in dms: free resources, payment status and rewards, and the
routes dms does not offer (501, in NuNet's error shape).

NuNet's reward flow goes through a Cardano oracle; dms settles through its EVM escrow instead, so
`request-reward` answers in NuNet's shape with what dms does for that payment.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, GoBody, Query, parse_body, reply, reply_json
from dms.api.errors import BadRequest, error_response
from dms.api.peers import FreeResourcesOut
from dms.errors import Conflict, NotFound
from dms.jobs.sp_resume import run_number
from dms.jobs.states import SPState
from dms.payments.contract import run_key
from dms.store.models import TransactionRow


class FreeOut(FreeResourcesOut):
    """NuNet's FreeResources (`/telemetry/free`), with the free GPUs beside it."""

    gpus: list[int] = Field(description="dms: indexes of the offered GPUs no job holds.")


async def telemetry_free(request: web.Request) -> web.Response:
    c = ctx(request)
    await c.onboarding.require()
    free = await c.onboarding.free()
    m = c.onboarding.machine
    core_mhz = m.cpu_mhz / m.cores if m.cores else 0
    vcpu = int(free.cpu_mhz // core_mhz) if core_mhz else 0
    return reply(FreeOut(tot_cpu_hz=free.cpu_mhz, ram=free.memory_mb, vcpu=vcpu, gpus=list(free.gpus)))


class SendStatusBody(GoBody):
    transaction_type: str = Field("fund", max_length=64)
    transaction_status: str = Field(max_length=64)
    tx_hash: str | None = Field(None, max_length=100)
    job_id: str | None = Field(None, max_length=64, description="dms: the quote paid for; NuNet's clients omit it.")


class MessageOut(BaseModel):
    message: str
    job_id: str | None = None


async def send_status(request: web.Request) -> web.Response:
    """NuNet's REST twin of the websocket's send-status: `success` starts the paid job, others wait."""
    body = await parse_body(request, SendStatusBody)
    requester = ctx(request).requester
    job_id = body.job_id
    if job_id is None:
        waiting = await requester.awaiting_payment()
        if len(waiting) != 1:
            raise Conflict(
                f"send-status without a job_id: {len(waiting)} quotes are awaiting payment, name one with job_id",
                code="ambiguous_job",
            )
        job_id = waiting[0]
    known = "success" if body.transaction_status == "success" else "pending"
    await requester.send_status(job_id, known, body.tx_hash)
    return reply(MessageOut(message=f"transaction status {body.transaction_status} acknowledged", job_id=job_id))


def go_time(row: TransactionRow) -> str:
    """The time as NuNet prints it (Go's time.String): `2023-11-13 10:00:00.5 +0000 UTC`."""
    text = row.at.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".")
    return f"{text} +0000 UTC"


class TransactionOut(BaseModel):
    tx_hash: str = Field(description="NuNet's key; empty when the entry has no transaction (a failed send).")
    transaction_type: str = Field(description="fund (a verified deposit), release, refund or settle.")
    date_time: str
    job_id: str
    kind: str
    amount: str | None = Field(description="Wei, as decimal text.")
    state: str
    error: str | None
    at: str

    @classmethod
    def of(cls, r: TransactionRow) -> TransactionOut:
        return cls(
            tx_hash=r.tx_hash or "", transaction_type=r.kind, date_time=go_time(r), job_id=r.job_id, kind=r.kind,
            amount=r.amount, state=r.state, error=r.error, at=r.at.isoformat(),
        )  # fmt: skip


CLEAN_TX = ("", "done", "refund", "withdraw")


async def transactions(request: web.Request) -> web.Response:
    """NuNet's list: an array of `{tx_hash, transaction_type, date_time}`, dms's ledger fields beside."""
    size_raw = request.query.get("size_done", "0")
    if not size_raw.isdigit():
        raise BadRequest("invalid size_done parameter", [{"field": "size_done", "message": "not a whole number"}])
    if request.query.get("clean_tx", "") not in CLEAN_TX:
        raise BadRequest("wrong clean_tx parameter", [{"field": "clean_tx", "message": "done, refund or withdraw"}])
    rows = await ctx(request).transactions.list()
    size = int(size_raw)
    if size:
        done = [r for r in rows if r.kind in ("release", "refund")][:size]
        rows = [r for r in rows if r.kind not in ("release", "refund") or r in done]
    return reply_json([TransactionOut.of(r).model_dump(mode="json") for r in rows])


class RewardBody(GoBody):
    compute_provider_address: str = Field("", max_length=200, description="Ignored, as NuNet ignores it.")
    tx_hash: str = Field(max_length=100)


class RewardOut(BaseModel):
    service_provider_addr: str
    compute_provider_addr: str
    reward_type: str = Field(
        description="release (the provider is paid) or refund (the payer is), by the settlement table; "
        "none when the job needed no settlement (payment.mode none)."
    )
    job_id: str
    state: str
    message: str


async def request_reward(request: web.Request) -> web.Response:
    body = await parse_body(request, RewardBody)
    requester = ctx(request).requester
    wanted = body.tx_hash.lower()
    row = next((r for r in await requester.list() if (r.tx_hash or "").lower() == wanted), None)
    if row is None:
        raise NotFound("unknown tx hash", [{"field": "tx_hash", "message": "no job was paid with it"}])
    state = SPState(row.state)
    if not state.is_terminal():
        return error_response(503, "job_running", "the job is still running")
    # What the settlement table decided for this job, as the SP's own ledger recorded it (a job that failed
    # after its container started is released, not refunded).
    key = run_key(row.job_id, run_number(row))  # a resumed job's current run is paid under its own key
    settled = [t.kind for t in await ctx(request).transactions.list() if t.job_id == key]
    reward = next((k for k in settled if k in ("release", "refund")), "none")
    return reply(
        RewardOut(
            service_provider_addr=str(row.quote.get("arbiter") or ""),
            compute_provider_addr=row.quote["compute_provider"]["payment_addr"],
            reward_type=reward,
            job_id=row.job_id,
            state=row.state,
            message="dms settles through its escrow contract: this node, as arbiter, sends the "
            f"{reward} itself when the job ends (see /transactions); there is nothing to claim",
        )
    )


UNSUPPORTED = {
    "/vm/start-default": ("POST", "firecracker VMs"),
    "/vm/start-custom": ("POST", "firecracker VMs"),
    "/peers/chat": ("GET", "peer chat"),
    "/peers/chat/clear": ("GET", "peer chat"),
    "/peers/chat/start": ("GET", "peer chat"),
    "/peers/chat/join": ("GET", "peer chat"),
    "/peers/file": ("GET", "file transfer between peers"),
    "/peers/file/clear": ("GET", "file transfer between peers"),
    "/peers/file/accept": ("GET", "file transfer between peers"),
    "/peers/file/send": ("GET", "file transfer between peers"),
}


async def not_offered(request: web.Request) -> web.Response:
    base = "/" + request.path.split("/", 3)[3]
    what = UNSUPPORTED[base][1]
    return error_response(
        501, "not_implemented", f"{what} ({request.method} {request.path}) is a NuNet route that dms does not offer"
    )


ENDPOINTS = [
    Endpoint("GET", "/telemetry/free", telemetry_free, "Free resources: NuNet's FreeResources", "telemetry",
             response=FreeOut),
    Endpoint("POST", "/run/send-status", send_status, "Report a payment (NuNet's REST twin of the websocket's)",
             "run", body=SendStatusBody, response=MessageOut),
    Endpoint("GET", "/transactions", transactions,
             "Payments (NuNet's {tx_hash, transaction_type, date_time}, dms's ledger beside)", "transactions",
             query=(Query("size_done", "0: all; N: the N newest releases/refunds and every other entry.", "integer"),
                    Query("clean_tx", "Accepted for NuNet's clients; dms keeps its ledger whole."))),
    Endpoint("POST", "/transactions/request-reward", request_reward,
             "What happens to a paid job's deposit (NuNet's reward request; dms's escrow settles it)",
             "transactions", body=RewardBody, response=RewardOut),
    *[Endpoint(method, path, not_offered, f"Not offered by dms: {what} (501)", "unsupported", errors=(501,))
      for path, (method, what) in UNSUPPORTED.items()],
]  # fmt: skip
