"""Run endpoints: ask for a quote, list and inspect jobs, cancel. The live flow is the websocket."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, parse_body, reply
from dms.artifacts import Artifact
from dms.jobs.spec import JobResources, JobSpec
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


class JobOut(BaseModel):
    job_id: str
    state: str
    image: str
    command: list[str]
    resources: JobResources
    compute_provider: str | None
    estimated_price: int
    exit_code: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    outputs: OutputsOut | None = Field(None, description="What the job left in /outputs, as a tar artifact.")

    @classmethod
    def of(cls, row: SPJobRow, outputs: Artifact | None = None) -> JobOut:
        spec = JobSpec.model_validate(row.spec)
        return cls(
            job_id=row.job_id, state=row.state, image=spec.image, command=spec.command, resources=spec.resources,
            compute_provider=row.cp_peer_id or row.quote["compute_provider"]["peer_id"],
            estimated_price=row.quote["estimated_price"], exit_code=row.exit_code, reason=row.reason,
            created_at=row.created_at, updated_at=row.updated_at,
            outputs=OutputsOut(sha256=outputs.sha256, size=outputs.size) if outputs else None,
        )  # fmt: skip


class JobsOut(BaseModel):
    jobs: list[JobOut]


class CancelOut(BaseModel):
    job_id: str
    cancelling: bool


async def request_service(request: web.Request) -> web.Response:
    body = await parse_body(request, RequestServiceBody)
    spec = JobSpec.model_validate(body.model_dump(exclude={"target_peer"}))
    quote: dict[str, Any] = await ctx(request).requester.request_service(spec, body.target_peer)
    return reply(QuoteOut.model_validate({k: v for k, v in quote.items() if k != "candidates"}))


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
    Endpoint("POST", "/run/request-service", request_service, "Choose a provider for a job and quote its price", "run",
             body=RequestServiceBody, response=QuoteOut),
    Endpoint("GET", "/run/jobs", list_jobs, "This node's jobs as service provider, newest first", "run",
             response=JobsOut),
    Endpoint("GET", "/run/jobs/{job_id}", get_job, "One job", "run", response=JobOut),
    Endpoint("POST", "/run/jobs/{job_id}/cancel", cancel_job, "Cancel a job", "run", response=CancelOut),
]  # fmt: skip
