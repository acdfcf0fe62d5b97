"""Run endpoints: ask for a quote, list and inspect jobs, cancel. The live flow is the websocket."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, GoBody, go_keys, read_object, reply, validate
from dms.artifacts import Artifact
from dms.errors import DmsError
from dms.jobs.nunet import NuNetJob, estimated_price, to_spec
from dms.jobs.requester import RequesterService
from dms.jobs.sp_resume import runs_of
from dms.jobs.spec import JobResources, JobSpec
from dms.jobs.states import SPState
from dms.limits import GO_INT_MAX as GO_INT
from dms.store.models import SPJobRow


class RequestServiceBody(JobSpec):
    target_peer: str | None = Field(None, max_length=128, description="Run on this provider only.")


class ProviderOut(BaseModel):
    peer_id: str
    payment_addr: str


class QuoteOut(BaseModel):
    job_id: str
    compute_provider: ProviderOut
    estimated_price: int = Field(description="wei")
    expires_at: datetime
    escrow_job_id: str | None = None
    escrow_address: str | None = None
    arbiter: str | None = None
    chain_id: int | None = None


class OutputsOut(BaseModel):
    sha256: str
    size: int


class RunOut(BaseModel):
    run: int = Field(description="1, 2, ...: a run after the first resumed the job after its provider was lost")
    compute_provider: str | None
    checkpoint: int | None = Field(None, description="The checkpoint it started from (none: from the start)")


class JobOut(BaseModel):
    job_id: str
    state: str
    executor: str = "docker"
    image: str | None
    module: str | None = None
    command: list[str]
    resources: JobResources
    compute_provider: str | None
    estimated_price: int
    exit_code: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    outputs: OutputsOut | None = Field(None, description="What the job left in /outputs, as a tar artifact.")
    runs: list[RunOut] = Field(default_factory=list, description="The job's runs, the current one last.")

    @classmethod
    def of(cls, row: SPJobRow, outputs: Artifact | None = None) -> JobOut:
        spec = JobSpec.model_validate(row.spec)
        return cls(
            job_id=row.job_id, state=row.state, executor=spec.executor, image=spec.image, module=spec.module,
            command=spec.argv, resources=spec.resources,
            compute_provider=row.cp_peer_id or row.quote["compute_provider"]["peer_id"],
            estimated_price=row.quote["estimated_price"], exit_code=row.exit_code, reason=row.reason,
            created_at=row.created_at, updated_at=row.updated_at,
            outputs=OutputsOut(sha256=outputs.sha256, size=outputs.size) if outputs else None,
            runs=[RunOut.model_validate(r) for r in runs_of(row)],
        )  # fmt: skip


class JobsOut(BaseModel):
    jobs: list[JobOut]


class CancelOut(BaseModel):
    job_id: str
    cancelling: bool


# A body with any of these keys (any case) is NuNet's DeploymentRequest; any other is dms's strict shape.
NUNET_KEYS = frozenset({"params", "constraints", "address_user", "service_type", "max_ntx"})


class NuNetParams(GoBody):
    image_id: str = Field("", max_length=256)
    model_url: str = Field("", max_length=32_768)
    packages: list[str] = Field(default_factory=list, max_length=256)
    machine_type: str = Field("", max_length=16, description="`gpu` asks for a GPU.")


class NuNetConstraints(GoBody):
    complexity: str = Field("", max_length=32, description="Low, Moderate or High (NuNet's price rate).")
    cpu: int = Field(0, ge=-GO_INT - 1, le=GO_INT, description="MHz.")
    ram: int = Field(0, ge=-GO_INT - 1, le=GO_INT, description="MB.")
    vram: int = Field(0, ge=-GO_INT - 1, le=GO_INT, description="MB per GPU.")
    power: int = Field(0, ge=-GO_INT - 1, le=GO_INT, description="W (NuNet's price).")
    time: int = Field(0, ge=-GO_INT - 1, le=GO_INT, description="Minutes: the paid run time.")


class NuNetRequestBody(GoBody):
    """NuNet's DeploymentRequest, read as Go reads it; the keys NuNet's SP fills in itself are ignored."""

    address_user: str = Field("", max_length=200)
    max_ntx: int = Field(0, ge=-GO_INT - 1, le=GO_INT, description="The most NuNet's own estimate may be, NTX.")
    blockchain: str = Field("", max_length=32)
    service_type: str = Field("", max_length=32, description="ml-training-cpu or ml-training-gpu.")
    tx_hash: str = Field("", max_length=100)
    params: NuNetParams = Field(default_factory=NuNetParams)
    constraints: NuNetConstraints = Field(default_factory=NuNetConstraints)


class NuNetQuoteOut(BaseModel):
    compute_provider_addr: str
    estimated_price: float = Field(description="NuNet's estimate, NTX.")
    metadata_hash: str = ""
    withdraw_hash: str = ""
    refund_hash: str = ""
    distribute_50_hash: str = ""
    distribute_75_hash: str = ""
    price_wei: int = Field(description="dms's price for the chosen provider, wei (its estimated_price elsewhere).")
    job_id: str
    compute_provider: ProviderOut
    expires_at: datetime
    escrow_job_id: str | None = None
    escrow_address: str | None = None
    arbiter: str | None = None
    chain_id: int | None = None


async def request_service(request: web.Request) -> web.Response:
    data = await read_object(request)
    if any(key.lower() in NUNET_KEYS for key in data):
        return await _nunet_request(request, validate(NuNetRequestBody, go_keys(NuNetRequestBody, data)))
    body = validate(RequestServiceBody, data)
    spec = JobSpec.model_validate(body.model_dump(exclude={"target_peer"}))
    quote: dict[str, Any] = await ctx(request).requester.request_service(spec, body.target_peer)
    return reply(QuoteOut.model_validate({k: v for k, v in quote.items() if k != "candidates"}))


async def _replace_unpaid(requester: RequesterService, job_id: str | None) -> None:
    """Cancel NuNet's previous quote if it still waits for payment (NuNet replaces its stored request)."""
    if job_id is None:
        return
    with contextlib.suppress(DmsError):
        if (await requester.get(job_id)).state == SPState.AWAITING_PAYMENT.value:
            await requester.cancel(job_id)


async def _nunet_request(request: web.Request, body: NuNetRequestBody) -> web.Response:
    """NuNet's request, priced as NuNet prices it, sent to NuNet's default peer (`/peers/depreq`) if one is set."""
    c = ctx(request)
    p, k = body.params, body.constraints
    job = NuNetJob(
        service_type=body.service_type, max_ntx=body.max_ntx, image_id=p.image_id, model_url=p.model_url,
        packages=tuple(p.packages), machine_type=p.machine_type, complexity=k.complexity, cpu=k.cpu, ram=k.ram,
        vram=k.vram, power=k.power, time=k.time, address_user=body.address_user,
    )  # fmt: skip
    m = c.onboarding.machine
    spec = to_spec(job, m.cpu_mhz / m.cores if m.cores else 0)
    quote: dict[str, Any] = await c.requester.request_service(spec, c.default_peer.peer_id)
    await _replace_unpaid(c.requester, c.nunet_quote.job_id)
    c.nunet_quote.job_id = quote["job_id"]
    dms = {k: v for k, v in quote.items() if k not in ("candidates", "estimated_price")}
    out = NuNetQuoteOut(
        compute_provider_addr=quote["compute_provider"]["payment_addr"],
        estimated_price=estimated_price(job.complexity, job.time, job.power),
        price_wei=quote["estimated_price"],
        **dms,
    )
    return reply(out)


async def list_jobs(request: web.Request) -> web.Response:
    c = ctx(request)
    rows = await c.requester.list()
    return reply(JobsOut(jobs=[JobOut.of(r, c.outputs.get(r.job_id)) for r in rows]))


async def get_job(request: web.Request) -> web.Response:
    c = ctx(request)
    row = await c.requester.get(request.match_info["job_id"])
    return reply(JobOut.of(row, c.outputs.get(row.job_id)))


async def cancel_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    await ctx(request).requester.cancel(job_id)
    return reply(CancelOut(job_id=job_id, cancelling=True))


ENDPOINTS = [
    Endpoint("POST", "/run/request-service", request_service,
             "Choose a provider for a job and quote its price. Takes dms's job (strict: unknown fields refused) or "
             "NuNet's DeploymentRequest (any of params, constraints, address_user, service_type, max_ntx present: "
             "read as NuNet's Go server reads it, unknown keys ignored, keys in any case; answered with "
             "NuNetQuoteOut)", "run", body=RequestServiceBody, response=QuoteOut, alt_body=NuNetRequestBody,
             alt_response=NuNetQuoteOut),
    Endpoint("GET", "/run/jobs", list_jobs, "This node's jobs as service provider, newest first", "run",
             response=JobsOut),
    Endpoint("GET", "/run/jobs/{job_id}", get_job, "One job", "run", response=JobOut),
    Endpoint("POST", "/run/jobs/{job_id}/cancel", cancel_job, "Cancel a job", "run", response=CancelOut),
]  # fmt: skip
