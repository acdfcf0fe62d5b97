"""Artifacts over REST: upload (streamed), list, download (HTTP ranges honoured), fetch from a peer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Body, Endpoint, Handler, parse_body, reply
from dms.api.errors import error_response
from dms.api.run import QuoteOut
from dms.artifacts import (
    ArtifactCorrupt,
    ArtifactNotFound,
    ArtifactTooLarge,
    QuotaExceeded,
    TransferFailed,
    check_hash,
)
from dms.errors import Conflict, DmsError, NotFound
from dms.jobs.spec import JobSpec
from dms.jobs.states import SPState
from dms.limits import MAX_SEQ

UPLOAD_CHUNK = 256 * 1024
MIB = 1024 * 1024

# Statuses for the artifact errors that have none in the shared table (dms.api.errors.STATUS).
STATUS: dict[type[DmsError], int] = {ArtifactTooLarge: 413, QuotaExceeded: 507, ArtifactCorrupt: 502,
                                     TransferFailed: 502}  # fmt: skip


class ArtifactOut(BaseModel):
    sha256: str
    size: int = Field(description="bytes")


class ArtifactsOut(BaseModel):
    artifacts: list[ArtifactOut]
    used: int = Field(description="bytes held")
    quota: int = Field(description="bytes the store may hold")


class FetchBody(Body):
    peer_id: str = Field(min_length=1, max_length=128, description="The peer that holds the artifact.")


def _mapped(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DmsError as exc:
            status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), None)
            if status is None:
                raise
            return error_response(status, exc.code, exc.message, exc.details)

    return wrapped


async def upload(request: web.Request) -> web.Response:
    c = ctx(request)
    limit = int(c.settings.artifacts.max_upload_mb * MIB)
    if request.content_length is not None and request.content_length > limit:
        raise ArtifactTooLarge(f"the upload is {request.content_length} bytes, over the limit of {limit}")

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
            yield chunk

    art = await c.artifacts.put(chunks(), limit)
    return reply(ArtifactOut(sha256=art.sha256, size=art.size), status=201)


async def list_artifacts(request: web.Request) -> web.Response:
    store = ctx(request).artifacts
    arts = [ArtifactOut(sha256=a.sha256, size=a.size) for a in store.all()]
    return reply(ArtifactsOut(artifacts=arts, used=store.used, quota=store.limits.quota))


async def download(request: web.Request) -> web.FileResponse:
    path = ctx(request).artifacts.path(request.match_info["sha256"])
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def job_outputs(request: web.Request) -> web.FileResponse:
    c = ctx(request)
    job_id = request.match_info["job_id"]
    await c.requester.get(job_id)  # 404 for an unknown job
    art = c.outputs.get(job_id)
    if art is None:
        raise ArtifactNotFound(f"job {job_id} has no outputs (yet)")
    headers = {"Content-Type": "application/x-tar", "Content-Disposition": f'attachment; filename="{job_id}.tar"',
               "X-Dms-Sha256": art.sha256}  # fmt: skip
    return web.FileResponse(c.artifacts.path(art.sha256), headers=headers)


class CheckpointOut(BaseModel):
    job_id: str
    seq: int = Field(description="1, 2, ... in the order the provider took them")
    sha256: str = Field(description="The snapshot, a tar artifact: GET /api/v1/artifacts/{sha256}")
    size: int
    at: float = Field(description="When it was taken, seconds since the epoch (the provider's clock)")
    final: bool = Field(description="Taken when the job ended or was cancelled")
    provider: str = Field("", description="The provider whose run took it")
    run_seq: int = Field(0, description="Its number within that provider's run")


class CheckpointsOut(BaseModel):
    checkpoints: list[CheckpointOut]


async def all_checkpoints(request: web.Request) -> web.Response:
    every = ctx(request).checkpoints.all()
    return reply(CheckpointsOut(checkpoints=[CheckpointOut(job_id=j, **e) for j, es in every.items() for e in es]))


async def job_checkpoints(request: web.Request) -> web.Response:
    c = ctx(request)
    job_id = request.match_info["job_id"]
    await c.requester.get(job_id)  # 404 for an unknown job
    return reply(CheckpointsOut(checkpoints=[CheckpointOut(job_id=job_id, **e) for e in c.checkpoints.of(job_id)]))


class ResumeBody(Body):
    checkpoint: int | None = Field(None, ge=1, le=MAX_SEQ, description="The checkpoint's seq; the latest when absent.")


class ResumedFrom(BaseModel):
    job_id: str
    checkpoint: int


class ResumeOut(QuoteOut):
    resumed_from: ResumedFrom


async def resume(request: web.Request) -> web.Response:
    """Quote a new run of an ended job, restored from one of its checkpoints; paid and followed like any."""
    c = ctx(request)
    job_id = request.match_info["job_id"]
    body = await parse_body(request, ResumeBody) if request.can_read_body else ResumeBody()
    row = await c.requester.get(job_id)
    if not SPState(row.state).is_terminal():
        raise Conflict(f"job {job_id} is still {row.state}; a job is resumed once it has ended", code="job_not_ended")
    cps = c.checkpoints.of(job_id)
    if not cps:
        raise Conflict(f"job {job_id} has no checkpoints", code="no_checkpoint")
    pick = cps[-1] if body.checkpoint is None else next((x for x in cps if x["seq"] == body.checkpoint), None)
    if pick is None:
        have = ", ".join(str(x["seq"]) for x in cps)
        raise NotFound(f"job {job_id} has no checkpoint {body.checkpoint} (it has {have})", code="no_checkpoint")
    spec = JobSpec.model_validate(row.spec).model_copy(update={"restore": pick["sha256"]})
    quote: dict[str, Any] = await c.requester.request_service(spec, None)
    out = {k: v for k, v in quote.items() if k != "candidates"}
    return reply(ResumeOut.model_validate({**out, "resumed_from": {"job_id": job_id, "checkpoint": pick["seq"]}}))


async def fetch(request: web.Request) -> web.Response:
    sha = check_hash(request.match_info["sha256"])
    body = await parse_body(request, FetchBody)
    art = await ctx(request).transfer.fetch(body.peer_id, sha)
    return reply(ArtifactOut(sha256=art.sha256, size=art.size))


ENDPOINTS = [
    Endpoint("POST", "/artifacts", _mapped(upload),
             "Store the request body as an artifact (streamed; artifacts.max_upload_mb)", "artifacts",
             response=ArtifactOut, ok_status=201),
    Endpoint("GET", "/artifacts", list_artifacts, "The artifacts on this node, most recently used first",
             "artifacts", response=ArtifactsOut),
    Endpoint("GET", "/artifacts/{sha256}", download, "Download an artifact (HTTP Range requests honoured)",
             "artifacts"),
    Endpoint("POST", "/artifacts/{sha256}/fetch", _mapped(fetch),
             "Fetch an artifact from a peer over /dms/artifacts/1.0.0 (resumed, verified)", "artifacts",
             body=FetchBody, response=ArtifactOut),
    Endpoint("GET", "/run/jobs/{job_id}/outputs", job_outputs,
             "The job's outputs (what it left in /outputs) as a tar", "run"),
    Endpoint("GET", "/run/checkpoints", all_checkpoints, "Every job's checkpoints held by this node (as SP)", "run",
             response=CheckpointsOut),
    Endpoint("GET", "/run/jobs/{job_id}/checkpoints", job_checkpoints, "One job's checkpoints, oldest first", "run",
             response=CheckpointsOut),
    Endpoint("POST", "/run/jobs/{job_id}/resume", resume,
             "Quote a new run of an ended job from one of its checkpoints (rollback)", "run",
             body=ResumeBody, response=ResumeOut),
]  # fmt: skip
