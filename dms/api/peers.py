"""Peer endpoints: who we are on the network, who is connected, what every known peer offers, RTT.

NuNet's shapes first (`{ID, Addrs}`, `/peers/dht` as bare peer ids, `/peers/dht/dump` as PeerData
records); dms's fields sit beside NuNet's keys, never in their place.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, Query, reply, reply_json
from dms.api.onboarding import ExecutorOut, executor_out
from dms.errors import InvalidInput
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
    ID: str = Field(description="NuNet's key: the peer id.")
    Addrs: list[str] = Field(description="NuNet's key: dialable addresses.")
    peer_id: str
    addrs: list[str]
    executor: ExecutorOut
    advert: AdvertOut | None = Field(None, description="What we advertise now; none when not onboarded/available.")


class ConnectedOut(BaseModel):
    ID: str
    Addrs: list[str]
    peer_id: str
    addrs: list[str]


class FreeResourcesOut(BaseModel):
    """NuNet's FreeResources (cpu in MHz under `tot_cpu_hz`, as NuNet has it; memory in MB)."""

    id: int = 1
    tot_cpu_hz: int
    price_cpu: float = 0
    ram: int
    price_ram: float = 0
    vcpu: int = Field(description="Free MHz divided by one core's MHz.")
    disk: float = 0
    price_disk: float = 0


class PeerDataOut(BaseModel):
    """NuNet's PeerData record, with dms's view of the peer beside its keys."""

    peer_id: str
    is_available: bool
    has_gpu: bool
    allow_cardano: bool = False
    gpu_info: list[GpuOut] | None
    tokenomics_addrs: str
    tokenomics_blockchain: str
    available_resources: FreeResourcesOut
    services: list[str] = Field(default_factory=list)
    timestamp: int
    addrs: list[str]
    dms_version: str
    seq: int
    age_s: float = Field(description="Seconds since the record arrived.")
    connected: bool
    rtt_ms: float | None
    capacity: AdvertOut

    @classmethod
    def of(cls, p: PeerRecordView) -> PeerDataOut:
        r, a = p.record, p.record.advert
        clock = a.cpu_mhz / a.cores if a.cores else 0
        return cls(
            peer_id=p.peer_id, is_available=True, has_gpu=bool(a.gpus),
            gpu_info=[GpuOut(vendor=g.vendor, model=g.model, vram_mb=g.vram_mb) for g in a.gpus] or None,
            tokenomics_addrs=a.payment_addr, tokenomics_blockchain=blockchain_of(a.payment_addr),
            available_resources=FreeResourcesOut(
                tot_cpu_hz=a.cpu_mhz, ram=a.memory_mb, vcpu=int(a.cpu_mhz // clock) if clock else 0, disk=a.disk_mb
            ),
            timestamp=r.timestamp_ms // 1000, addrs=list(r.addrs), dms_version=r.dms_version, seq=r.seq,
            age_s=round(p.age_s, 3), connected=p.connected,
            rtt_ms=None if p.rtt_s is None else round(p.rtt_s * 1000, 3), capacity=AdvertOut.of(a),
        )  # fmt: skip


def blockchain_of(address: str) -> str:
    return "ethereum" if address.lower().startswith("0x") else "cardano" if address else ""


class DepreqOut(BaseModel):
    message: str
    peer_id: str | None = Field(None, description="The default deployment-request receiver, if one is set.")


class PingOut(BaseModel):
    peer_id: str
    rtt_ms: float


async def self_info(request: web.Request) -> web.Response:
    c = ctx(request)
    advert = c.node.current_advert
    return reply(
        SelfOut(
            ID=c.node.peer_id,
            Addrs=c.node.addrs,
            peer_id=c.node.peer_id,
            addrs=c.node.addrs,
            executor=executor_out(request),
            advert=None if advert is None else AdvertOut.of(advert),
        )
    )


async def connected(request: web.Request) -> web.Response:
    peers = await ctx(request).node.connected()
    out = [ConnectedOut(ID=p.peer_id, Addrs=list(p.addrs), peer_id=p.peer_id, addrs=list(p.addrs)) for p in peers]
    return reply_json([o.model_dump(mode="json") for o in out])


def _known(request: web.Request) -> list[PeerRecordView]:
    return sorted(ctx(request).node.peers(), key=lambda p: p.peer_id)


async def known_ids(request: web.Request) -> web.Response:
    """NuNet's `/peers/dht` and `/peers/kad-dht`: the ids of the peers with a record, bare strings."""
    return reply_json([p.peer_id for p in _known(request)])


async def dump(request: web.Request) -> web.Response:
    return reply_json([PeerDataOut.of(p).model_dump(mode="json") for p in _known(request)])


async def depreq(request: web.Request) -> web.Response:
    """NuNet's default deployment-request receiver: NuNet-shaped job requests go to it alone."""
    c = ctx(request)
    wanted = request.query.get("peerID")
    if wanted is None:
        current = c.default_peer.peer_id
        said = "no default peer set" if current is None else f"default peer is {current}"
        return reply(DepreqOut(message=said, peer_id=current))
    if wanted == "0":
        c.default_peer.peer_id = None
        return reply(DepreqOut(message="default peer successfully removed"))
    if wanted == c.node.peer_id:
        raise InvalidInput("peerID can not be self peerID", [{"field": "peerID", "message": "this node itself"}])
    if wanted not in {p.peer_id for p in c.node.peers()}:
        why = "Peer not in DHT yet.\nPlease use peerID from DHT Peers section of 'nunet peer list'"
        raise InvalidInput(why, [{"field": "peerID", "message": "no record from this peer"}], code="unknown_peer")
    c.default_peer.peer_id = wanted
    return reply(
        DepreqOut(message=f"Successfully set {wanted} as default deployment request receiver.", peer_id=wanted)
    )


async def ping(request: web.Request) -> web.Response:
    peer_id = request.match_info["peer_id"]
    rtt = await ctx(request).node.ping(peer_id)
    return reply(PingOut(peer_id=peer_id, rtt_ms=round(rtt * 1000, 3)))


ENDPOINTS = [
    Endpoint("GET", "/peers", connected, "Peers with an open connection to this node: NuNet's [{ID, Addrs}]",
             "peers", response=None),
    Endpoint("GET", "/peers/self", self_info, "This node: peer id, addresses, executor, what it advertises",
             "peers", response=SelfOut),
    Endpoint("GET", "/peers/dht", known_ids, "The ids of every peer with a record on our channel (NuNet's shape)",
             "peers"),
    Endpoint("GET", "/peers/kad-dht", known_ids, "Same as /peers/dht (dms keeps one peer table)", "peers"),
    Endpoint("GET", "/peers/dht/dump", dump,
             "Every known peer: NuNet's PeerData with dms's capacity, age and RTT beside it", "peers"),
    Endpoint("GET", "/peers/depreq", depreq, "Show, set (peerID=ID) or clear (peerID=0) the default provider",
             "peers", response=DepreqOut, query=(Query("peerID", "A peer id, or 0 to clear."),)),
    Endpoint("GET", "/peers/ping/{peer_id}", ping, "Round-trip time to a peer", "peers", response=PingOut),
]  # fmt: skip
