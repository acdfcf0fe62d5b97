"""Peer endpoints: who we are on the network, who is connected, what every known peer offers, RTT."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, reply
from dms.api.onboarding import ExecutorOut, executor_out
from dms.network import Advert, PeerRecordView


class GpuOut(BaseModel):
    vendor: str
    model: str
    vram_mb: int


class AdvertOut(BaseModel):
    channel: str
    cpu_mhz: int = Field(description="Free CPU, MHz.")
    cores: float
    memory_mb: int = Field(description="Free memory, MB.")
    disk_mb: int
    gpus: list[GpuOut]
    ntx_price: int = Field(description="Wei per second per 1,000 MHz.")
    payment_addr: str
    executors: list[str]

    @classmethod
    def of(cls, a: Advert) -> AdvertOut:
        return cls(
            channel=a.channel, cpu_mhz=a.cpu_mhz, cores=a.cores, memory_mb=a.memory_mb, disk_mb=a.disk_mb,
            gpus=[GpuOut(vendor=g.vendor, model=g.model, vram_mb=g.vram_mb) for g in a.gpus],
            ntx_price=a.ntx_price, payment_addr=a.payment_addr, executors=list(a.executors),
        )  # fmt: skip


class SelfOut(BaseModel):
    peer_id: str
    addrs: list[str]
    executor: ExecutorOut
    advert: AdvertOut | None = Field(None, description="What we advertise now; none when not onboarded/available.")


class ConnectedOut(BaseModel):
    peer_id: str
    addrs: list[str]


class ConnectedListOut(BaseModel):
    peers: list[ConnectedOut]


class KnownPeerOut(BaseModel):
    peer_id: str
    addrs: list[str]
    dms_version: str
    seq: int
    age_s: float = Field(description="Seconds since the record arrived.")
    connected: bool
    rtt_ms: float | None
    capacity: AdvertOut

    @classmethod
    def of(cls, p: PeerRecordView) -> KnownPeerOut:
        r = p.record
        return cls(
            peer_id=p.peer_id, addrs=list(r.addrs), dms_version=r.dms_version, seq=r.seq, age_s=round(p.age_s, 3),
            connected=p.connected, rtt_ms=None if p.rtt_s is None else round(p.rtt_s * 1000, 3),
            capacity=AdvertOut.of(r.advert),
        )  # fmt: skip


class KnownListOut(BaseModel):
    peers: list[KnownPeerOut]


class PingOut(BaseModel):
    peer_id: str
    rtt_ms: float


async def self_info(request: web.Request) -> web.Response:
    c = ctx(request)
    advert = c.node.current_advert
    return reply(
        SelfOut(
            peer_id=c.node.peer_id,
            addrs=c.node.addrs,
            executor=executor_out(request),
            advert=None if advert is None else AdvertOut.of(advert),
        )
    )


async def connected(request: web.Request) -> web.Response:
    peers = await ctx(request).node.connected()
    return reply(ConnectedListOut(peers=[ConnectedOut(peer_id=p.peer_id, addrs=list(p.addrs)) for p in peers]))


async def known(request: web.Request) -> web.Response:
    views = sorted(ctx(request).node.peers(), key=lambda p: p.peer_id)
    return reply(KnownListOut(peers=[KnownPeerOut.of(p) for p in views]))


async def ping(request: web.Request) -> web.Response:
    peer_id = request.match_info["peer_id"]
    rtt = await ctx(request).node.ping(peer_id)
    return reply(PingOut(peer_id=peer_id, rtt_ms=round(rtt * 1000, 3)))


ENDPOINTS = [
    Endpoint("GET", "/peers", connected, "Peers with an open connection to this node", "peers",
             response=ConnectedListOut),
    Endpoint("GET", "/peers/self", self_info, "This node: peer id, addresses, executor, what it advertises",
             "peers", response=SelfOut),
    Endpoint("GET", "/peers/dht", known, "Every known peer on our channel with its advertised capacity and age",
             "peers", response=KnownListOut),
    Endpoint("GET", "/peers/ping/{peer_id}", ping, "Round-trip time to a peer", "peers", response=PingOut),
]  # fmt: skip
