"""Onboarding and device endpoints (NuNet's paths): thin handlers over OnboardingService."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Body, Endpoint, Query, parse_body, query_bool, reply, reply_json
from dms.api.errors import BadRequest
from dms.onboarding import wallet
from dms.onboarding.gpus import Gpu
from dms.onboarding.record import Onboarding
from dms.onboarding.rules import Resources

# --- bodies -------------------------------------------------------------------------------------


class OnboardBody(Body):
    memory: int = Field(description="Memory to reserve for the network, in MB.")
    cpu: int = Field(description="CPU to reserve for the network, in MHz (cores x clock).")
    channel: str = Field(description="The network channel to join; one of p2p.channels.")
    payment_addr: str = Field(description="EIP-55 checksummed Ethereum address that receives payouts.")
    ntx_price: int = Field(0, description="Price in wei per second per 1,000 MHz of CPU.")
    gpus: list[int] = Field(default_factory=list, description="Indexes of detected GPUs to offer.")
    is_available: bool = Field(True, description="Accept jobs now.")


class ResourceConfigBody(Body):
    memory: int | None = Field(None, description="New memory reservation, MB.")
    cpu: int | None = Field(None, description="New CPU reservation, MHz.")
    gpus: list[int] | None = Field(None, description="New set of offered GPU indexes.")


class AvailabilityBody(Body):
    is_available: bool


# --- responses ----------------------------------------------------------------------------------


class GpuOut(BaseModel):
    index: int
    vendor: str
    model: str
    vram_mb: int

    @classmethod
    def of(cls, g: Gpu) -> GpuOut:
        return cls(index=g.index, vendor=g.vendor, model=g.model, vram_mb=g.vram_mb)


class ProvisionedOut(BaseModel):
    cpu: int = Field(description="Total CPU, MHz.")
    memory: int = Field(description="Total memory, MB.")
    total_cores: int
    disk: int = Field(description="Size of the data dir's file system, MB.")
    gpus: list[GpuOut]


class KeyPairOut(BaseModel):
    address: str
    private_key: str


class ResourcesOut(BaseModel):
    cpu: int = Field(description="MHz")
    memory: int = Field(description="MB")
    gpus: list[int]

    @classmethod
    def of(cls, r: Resources) -> ResourcesOut:
        return cls(cpu=r.cpu_mhz, memory=r.memory_mb, gpus=list(r.gpus))


class OnboardingOut(BaseModel):
    onboarded: bool
    channel: str | None = None
    payment_addr: str | None = None
    ntx_price: int | None = None
    reserved: ResourcesOut | None = None
    free: ResourcesOut | None = None
    is_available: bool | None = None
    onboarded_at: datetime | None = None
    updated_at: datetime | None = None


class ExecutorOut(BaseModel):
    available: bool
    reason: str | None = None
    kinds: dict[str, str | None] = {}
    """Each executor ("docker", "wasm"): null when it works, else why not."""


def executor_out(request: web.Request) -> ExecutorOut:
    provider = ctx(request).provider
    problem = provider.executor_problem
    return ExecutorOut(available=problem is None, reason=problem, kinds=provider.executor_problems)


class StatusOut(OnboardingOut):
    dms_version: str
    executor: ExecutorOut
    metadata_path: str
    database_path: str


class AvailabilityOut(BaseModel):
    is_available: bool


class OffboardOut(BaseModel):
    offboarded: bool


# --- handlers -----------------------------------------------------------------------------------


def _onboarding_fields(rec: Onboarding | None, free: Resources) -> dict[str, Any]:
    if rec is None:
        return {"onboarded": False}
    return {
        "onboarded": True,
        "channel": rec.channel,
        "payment_addr": rec.payment_addr,
        "ntx_price": rec.ntx_price,
        "reserved": ResourcesOut.of(rec.reserved),
        "free": ResourcesOut.of(free),
        "is_available": rec.is_available,
        "onboarded_at": rec.onboarded_at,
        "updated_at": rec.updated_at,
    }


async def _out(request: web.Request, rec: Onboarding) -> web.Response:
    free = await ctx(request).onboarding.free()
    return reply(OnboardingOut(**_onboarding_fields(rec, free)))


async def provisioned(request: web.Request) -> web.Response:
    m = ctx(request).onboarding.machine
    return reply(
        ProvisionedOut(
            cpu=m.cpu_mhz, memory=m.memory_mb, total_cores=m.cores, disk=m.disk_mb, gpus=[GpuOut.of(g) for g in m.gpus]
        )
    )


async def new_address(request: web.Request) -> web.Response:
    chain = request.query.get("blockchain", "ethereum")
    if chain != "ethereum":
        raise BadRequest(
            f"blockchain: {chain!r} is not supported; use ethereum",
            [{"field": "blockchain", "message": "only ethereum is supported"}],
        )
    pair = wallet.new_key_pair()
    return reply(KeyPairOut(address=pair.address, private_key=pair.private_key))


async def onboard(request: web.Request) -> web.Response:
    body = await parse_body(request, OnboardBody)
    rec = await ctx(request).onboarding.onboard(
        reserved=Resources(body.cpu, body.memory, tuple(body.gpus)),
        channel=body.channel,
        payment_addr=body.payment_addr,
        ntx_price=body.ntx_price,
        is_available=body.is_available,
    )
    return await _out(request, rec)


async def status(request: web.Request) -> web.Response:
    c = ctx(request)
    rec = await c.onboarding.get()
    fields = _onboarding_fields(rec, await c.onboarding.free())
    return reply(
        StatusOut(
            **fields,
            dms_version=c.version,
            executor=executor_out(request),
            metadata_path=str(c.onboarding.metadata_path),
            database_path=c.database_path,
        )
    )


async def get_metadata(request: web.Request) -> web.Response:
    svc = ctx(request).onboarding
    rec = await svc.require()
    return reply_json(await svc.metadata_of(rec))


async def resource_config(request: web.Request) -> web.Response:
    body = await parse_body(request, ResourceConfigBody)
    if body.cpu is None and body.memory is None and body.gpus is None:
        raise BadRequest("nothing to change: give cpu, memory or gpus")
    rec = await ctx(request).onboarding.resource_config(cpu_mhz=body.cpu, memory_mb=body.memory, gpus=body.gpus)
    return await _out(request, rec)


async def offboard(request: web.Request) -> web.Response:
    await ctx(request).onboarding.offboard(force=query_bool(request, "force"))
    return reply(OffboardOut(offboarded=True))


async def device_status(request: web.Request) -> web.Response:
    rec = await ctx(request).onboarding.require()
    return reply(AvailabilityOut(is_available=rec.is_available))


async def set_device_status(request: web.Request) -> web.Response:
    body = await parse_body(request, AvailabilityBody)
    rec = await ctx(request).onboarding.set_available(body.is_available)
    return reply(AvailabilityOut(is_available=rec.is_available))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/onboarding/provisioned",
        provisioned,
        "What this machine has in total",
        "onboarding",
        response=ProvisionedOut,
    ),
    Endpoint(
        "GET",
        "/onboarding/address/new",
        new_address,
        "Make a new Ethereum key pair (shown once)",
        "onboarding",
        response=KeyPairOut,
        query=(Query("blockchain", "Only `ethereum`."),),
    ),
    Endpoint(
        "POST",
        "/onboarding/onboard",
        onboard,
        "Reserve resources for the network and join a channel",
        "onboarding",
        body=OnboardBody,
        response=OnboardingOut,
    ),
    Endpoint(
        "GET",
        "/onboarding/status",
        status,
        "Whether and how this machine is onboarded",
        "onboarding",
        response=StatusOut,
    ),
    Endpoint("GET", "/onboarding/metadata", get_metadata, "The metadata document (NuNet's shape)", "onboarding"),
    Endpoint(
        "POST",
        "/onboarding/resource-config",
        resource_config,
        "Change the reservation",
        "onboarding",
        body=ResourceConfigBody,
        response=OnboardingOut,
    ),
    Endpoint(
        "POST",
        "/onboarding/offboard",
        offboard,
        "Leave the network and forget the onboarding",
        "onboarding",
        response=OffboardOut,
        query=(Query("force", "Offboard even while jobs run.", "boolean"),),
    ),
    Endpoint(
        "GET", "/device/status", device_status, "Whether this machine accepts jobs", "device", response=AvailabilityOut
    ),
    Endpoint(
        "POST",
        "/device/status",
        set_device_status,
        "Accept jobs or stop accepting them",
        "device",
        body=AvailabilityBody,
        response=AvailabilityOut,
    ),
]
