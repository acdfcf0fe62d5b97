"""Between onboarding, the network and matching: what we advertise, and what peers' adverts offer us.

Pure functions over snapshots; the composition root calls them whenever capacity may have changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from dms.matching import Candidate
from dms.network.model import Advert, GpuOffer, PeerRecordView
from dms.onboarding.record import Onboarding
from dms.onboarding.rules import Provisioned, Resources


def advert_for(
    rec: Onboarding | None, free: Resources, machine: Provisioned, executors: tuple[str, ...]
) -> Advert | None:
    """What to publish now: nothing unless onboarded and available; only the executors that work now
    ("docker" when its engine answers, "wasm"), so a node without Docker advertises wasm only."""
    if rec is None or not rec.is_available:
        return None
    return Advert(
        channel=rec.channel,
        cpu_mhz=max(free.cpu_mhz, 0),
        cores=machine.cores,
        memory_mb=max(free.memory_mb, 0),
        disk_mb=max(free.disk_mb, 0),
        ntx_price=rec.ntx_price,
        payment_addr=rec.payment_addr,
        executors=executors,
        gpus=tuple(GpuOffer(g.vendor, g.model, g.vram_mb) for g in machine.gpus if g.index in free.gpus),
    )


def candidates_from(peers: Iterable[PeerRecordView]) -> list[Candidate]:
    """Matching's view of the peer table. A record exists only while its peer is available."""
    return [
        Candidate(
            peer_id=p.peer_id,
            channel=a.channel,
            available=True,
            cpu_mhz=a.cpu_mhz,
            cores=int(a.cores),
            memory_mb=a.memory_mb,
            disk_mb=a.disk_mb,
            gpus=a.gpus,
            ntx_price=a.ntx_price,
            executors=a.executors,
            rtt_s=p.rtt_s,
            payment_addr=a.payment_addr,
        )
        for p in peers
        for a in (p.record.advert,)
    ]
