"""Pure matching: given a frozen snapshot of candidate providers and a job's needs, rank who can run it.

Stages, as in Nomad's scheduler: feasibility (filter, with the reason each candidate is out), then score
(price, then measured round-trip time, then headroom; the peer id breaks ties so the order is stable).
RTT: `max_rtt_ms` is a hard filter (a provider above it, or with no measured RTT, is out, and the reason
names it); `preferred_rtt_ms` is soft (providers within it rank ahead of the others, price next).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from dms.network.model import GpuOffer
from dms.pricing import job_price


@dataclass(frozen=True)
class Candidate:
    """What a provider advertises (its free capacity), plus what we measured (RTT)."""

    peer_id: str
    channel: str
    available: bool
    cpu_mhz: int
    cores: int
    memory_mb: int
    gpus: tuple[GpuOffer, ...]
    ntx_price: int
    executors: tuple[str, ...]
    rtt_s: float | None = None
    payment_addr: str = ""
    disk_mb: int = 0
    """Free disk for jobs' /workspace, MB."""


@dataclass(frozen=True)
class Needs:
    channel: str
    cpu_mhz: int
    cores: float
    memory_mb: int
    duration_s: int
    max_price: int
    gpus: int = 0
    vram_mb: int = 0
    """Per GPU."""
    gpu_vendor: str | None = None
    disk_mb: int = 0
    executor: str = "docker"
    target_peer: str | None = None
    escrow: bool = False
    """Paid through the EVM escrow: only providers with an Ethereum payout address can be paid so."""
    max_rtt_ms: int | None = None
    preferred_rtt_ms: int | None = None


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    price: int


@dataclass(frozen=True)
class Placement:
    ranked: tuple[Ranked, ...]
    rejected: tuple[tuple[str, str], ...]
    """(peer id, why not) for every candidate filtered out."""

    def explain(self) -> str:
        if not self.rejected:
            return "no compute provider is known on this channel"
        return "; ".join(f"{peer}: {why}" for peer, why in self.rejected)


def why_not(c: Candidate, n: Needs) -> str | None:
    """The first reason `c` cannot take the job, or None when it can."""
    if n.target_peer is not None and c.peer_id != n.target_peer:
        return "not the requested peer"
    if c.channel != n.channel:
        return f"on channel {c.channel}, not {n.channel}"
    if not c.available:
        return "not accepting jobs"
    if n.escrow and not (len(c.payment_addr) == 42 and c.payment_addr[:2].lower() == "0x"):
        return "paid in Cardano (its payout address is not an Ethereum one): escrow jobs pay Ethereum addresses only"
    if n.executor not in c.executors:
        return f"offers no {n.executor} executor"
    if c.cpu_mhz < n.cpu_mhz:
        return f"{c.cpu_mhz} MHz free, {n.cpu_mhz} needed"
    if c.cores < n.cores:
        return f"{c.cores} cores, {n.cores} needed"
    if c.memory_mb < n.memory_mb:
        return f"{c.memory_mb} MB free, {n.memory_mb} needed"
    if c.disk_mb < n.disk_mb:
        return f"{c.disk_mb} MB of disk free, {n.disk_mb} needed"
    if n.gpus:
        fitting = [g for g in c.gpus if g.vram_mb >= n.vram_mb and (n.gpu_vendor in (None, g.vendor))]
        if len(fitting) < n.gpus:
            return f"{len(fitting)} fitting GPU(s) free, {n.gpus} needed"
    price = job_price(c.ntx_price, n.cpu_mhz, n.duration_s)
    if price > n.max_price:
        return f"price {price} wei is above max_price {n.max_price}"
    if n.max_rtt_ms is not None:
        if c.rtt_s is None:
            return f"no measured RTT (not connected), max_rtt_ms {n.max_rtt_ms}"
        if c.rtt_s * 1000 > n.max_rtt_ms:
            return f"RTT {c.rtt_s * 1000:.1f} ms is above max_rtt_ms {n.max_rtt_ms}"
    return None


def beyond_preferred_rtt(c: Candidate, n: Needs) -> bool:
    """True when the job prefers an RTT that `c` is not known to meet (soft: ranks it after the others)."""
    if n.preferred_rtt_ms is None:
        return False
    return c.rtt_s is None or c.rtt_s * 1000 > n.preferred_rtt_ms


def headroom(c: Candidate, n: Needs) -> float:
    """The smaller share of CPU or memory left free after the job: more is better."""
    return min((c.cpu_mhz - n.cpu_mhz) / max(c.cpu_mhz, 1), (c.memory_mb - n.memory_mb) / max(c.memory_mb, 1))


def place(candidates: Iterable[Candidate], n: Needs) -> Placement:
    ok: list[Ranked] = []
    rejected: list[tuple[str, str]] = []
    for c in candidates:
        reason = why_not(c, n)
        if reason is None:
            ok.append(Ranked(c, job_price(c.ntx_price, n.cpu_mhz, n.duration_s)))
        elif reason != "not the requested peer":
            rejected.append((c.peer_id, reason))
    ok.sort(
        key=lambda r: (
            beyond_preferred_rtt(r.candidate, n),
            r.price,
            r.candidate.rtt_s if r.candidate.rtt_s is not None else math.inf,
            -headroom(r.candidate, n),
            r.candidate.peer_id,
        )
    )
    return Placement(tuple(ok), tuple(sorted(rejected)))
