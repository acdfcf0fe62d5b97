"""Onboarding and device endpoints (NuNet's paths): thin handlers over OnboardingService."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field

from dms import limits
from dms.api.context import ctx
from dms.api.endpoint import Endpoint, GoBody, Query, parse_body, query_bool, reply, reply_json
from dms.api.errors import BadRequest
from dms.onboarding import cardano, wallet
from dms.onboarding.gpus import Gpu
from dms.onboarding.record import Onboarding
from dms.onboarding.rules import Resources, default_disk_mb

# --- bodies -------------------------------------------------------------------------------------

GpuIndex = Annotated[int, Field(ge=0, lt=limits.MAX_GPUS)]


class OnboardBody(GoBody):
    memory: int = Field(ge=0, le=limits.MAX_MEMORY_MB, description="Memory to reserve for the network, in MB.")
    cpu: int = Field(ge=0, le=limits.MAX_CPU_MHZ, description="CPU to reserve for the network, in MHz (cores x clock).")
    channel: str = Field(description="The network channel to join; one of p2p.channels.")
    payment_addr: str = Field(
        description="Payout address: Ethereum (EIP-55 checksummed or all lower case; needed to offer escrow jobs) "
        "or a Cardano payment address (bech32, base or enterprise, mainnet or testnet)."
    )
    cardano: bool = Field(False, description="NuNet's flag for running a Cardano node; dms runs none (accepted).")
    server_mode: bool = Field(True, description="NuNet's flag (false: a local node); accepted, dms needs no switch.")
    disk: int | None = Field(
        None,
        ge=0,
        le=limits.MAX_DISK_MB,
        description="Disk to reserve for jobs' /workspace, MB (dms; 10-90 % of the data dir's disk; default 10 %).",
    )
    ntx_price: int = Field(0, le=limits.MAX_WEI, description="Price in wei per second per 1,000 MHz of CPU.")
    gpus: list[GpuIndex] = Field(
        default_factory=list, max_length=limits.MAX_GPUS, description="Indexes of detected GPUs to offer."
    )
    is_available: bool = Field(True, description="Accept jobs now.")


class ResourceConfigBody(GoBody):
    memory: int | None = Field(None, ge=0, le=limits.MAX_MEMORY_MB, description="New memory reservation, MB.")
    cpu: int | None = Field(None, ge=0, le=limits.MAX_CPU_MHZ, description="New CPU reservation, MHz.")
    disk: int | None = Field(None, ge=0, le=limits.MAX_DISK_MB, description="New disk reservation, MB.")
    gpus: list[GpuIndex] | None = Field(None, max_length=limits.MAX_GPUS, description="New set of offered GPU indexes.")


class AvailabilityBody(GoBody):
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


class CardanoWalletOut(BaseModel):
    address: str = Field(description="Shelley mainnet base address (m/1852'/1815'/0'/0/0, stake key .../2/0).")
    mnemonic: str = Field(description="24 words; whoever has them controls the address's funds.")


class ResourcesOut(BaseModel):
    cpu: int = Field(description="MHz")
    memory: int = Field(description="MB")
    disk: int = Field(description="MB, for jobs' /workspace")
    gpus: list[int]

    @classmethod
    def of(cls, r: Resources) -> ResourcesOut:
        return cls(cpu=r.cpu_mhz, memory=r.memory_mb, disk=r.disk_mb, gpus=list(r.gpus))


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
    error: str = Field("<nil>", description="NuNet's field: what is wrong with the onboarding, `<nil>` when nothing.")
    machine_uuid: str = Field(description="A stable id for this node (a UUID derived from its peer id).")
    dms_version: str
    executor: ExecutorOut
    metadata_path: str
    database_path: str


class DeviceStatusOut(BaseModel):
    online: bool = Field(description="NuNet's key: the machine accepts jobs.")
    is_available: bool


class AvailabilityOut(BaseModel):
    message: str = Field(description="NuNet's sentence: `Device status successfully changed to online|offline`.")
    is_available: bool


class OffboardOut(BaseModel):
    forced: bool
    message: str
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
    """NuNet answers onboard and resource-config with the metadata document; dms's view sits beside it."""
    svc = ctx(request).onboarding
    dms = OnboardingOut(**_onboarding_fields(rec, await svc.free())).model_dump(mode="json")
    return reply_json({**await svc.metadata_of(rec), **dms})


async def provisioned(request: web.Request) -> web.Response:
    m = ctx(request).onboarding.machine
    return reply(
        ProvisionedOut(
            cpu=m.cpu_mhz, memory=m.memory_mb, total_cores=m.cores, disk=m.disk_mb, gpus=[GpuOut.of(g) for g in m.gpus]
        )
    )


async def new_address(request: web.Request) -> web.Response:
    """NuNet's wallet maker: cardano (the default) → {address, mnemonic}; ethereum → {address, private_key}."""
    chain = request.query.get("blockchain", "cardano")
    if chain == "ethereum":
        pair = wallet.new_key_pair()
        return reply(KeyPairOut(address=pair.address, private_key=pair.private_key))
    if chain == "cardano":
        made = await asyncio.to_thread(cardano.new_wallet)
        return reply(CardanoWalletOut(address=made.address, mnemonic=made.mnemonic))
    raise BadRequest(
        f"blockchain: {chain!r} is not supported; use cardano or ethereum",
        [{"field": "blockchain", "message": "cardano or ethereum"}],
    )


async def onboard(request: web.Request) -> web.Response:
    body = await parse_body(request, OnboardBody)
    default = default_disk_mb(ctx(request).onboarding.machine)
    rec = await ctx(request).onboarding.onboard(
        reserved=Resources(body.cpu, body.memory, tuple(body.gpus), body.disk if body.disk is not None else default),
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
            machine_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, "nunet-dms:" + c.node.peer_id)),
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
    if body.cpu is None and body.memory is None and body.gpus is None and body.disk is None:
        raise BadRequest("nothing to change: give cpu, memory, disk or gpus")
    rec = await ctx(request).onboarding.resource_config(
        cpu_mhz=body.cpu, memory_mb=body.memory, gpus=body.gpus, disk_mb=body.disk
    )
    return await _out(request, rec)


async def offboard(request: web.Request) -> web.Response:
    force = query_bool(request, "force")
    await ctx(request).onboarding.offboard(force=force)
    return reply(OffboardOut(forced=force, message="Successfully Offboarded", offboarded=True))


async def device_status(request: web.Request) -> web.Response:
    rec = await ctx(request).onboarding.require()
    return reply(DeviceStatusOut(online=rec.is_available, is_available=rec.is_available))


async def set_device_status(request: web.Request) -> web.Response:
    body = await parse_body(request, AvailabilityBody)
    rec = await ctx(request).onboarding.set_available(body.is_available)
    word = "online" if rec.is_available else "offline"
    return reply(
        AvailabilityOut(message=f"Device status successfully changed to {word}", is_available=rec.is_available)
    )


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
        "Make a new wallet, Cardano (default) or Ethereum (shown once)",
        "onboarding",
        response=CardanoWalletOut,
        alt_response=KeyPairOut,
        query=(Query("blockchain", "`cardano` (default): {address, mnemonic}; `ethereum`: {address, private_key}."),),
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
    *[
        Endpoint(
            method,
            "/onboarding/offboard",
            offboard,
            "Leave the network and forget the onboarding" + ("" if method == "DELETE" else " (alias of DELETE)"),
            "onboarding",
            response=OffboardOut,
            query=(Query("force", "Offboard even while jobs run.", "boolean"),),
        )
        for method in ("DELETE", "POST")
    ],
    Endpoint(
        "GET", "/device/status", device_status, "Whether this machine accepts jobs", "device", response=DeviceStatusOut
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
