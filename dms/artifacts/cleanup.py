"""Which blobs go when the store is cleaned: pure, so the rules are tested without a disk.

Rules: nothing pinned (a live job's input, output or transfer) is ever chosen; blobs unused for longer
than `max_age_s` go; then, while the store (plus `need` bytes about to be added) is over `quota`,
the least recently used go first.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass


@dataclass(frozen=True)
class BlobInfo:
    size: int
    last_used: float
    """Seconds since the epoch: when it was stored, served or mounted last."""


def plan_cleanup(
    blobs: Mapping[str, BlobInfo],
    pinned: Set[str],
    *,
    now: float,
    max_age_s: float,
    quota: int,
    need: int = 0,
) -> list[str]:
    """The hashes to remove, oldest first. The result may still leave the store over quota (pins)."""
    free = sorted((h for h in blobs if h not in pinned), key=lambda h: (blobs[h].last_used, h))
    total = sum(b.size for b in blobs.values()) + need
    out: list[str] = []
    for h in free:
        if now - blobs[h].last_used > max_age_s or total > quota:
            out.append(h)
            total -= blobs[h].size
    return out


def fits(blobs: Mapping[str, BlobInfo], pinned: Set[str], quota: int, need: int) -> bool:
    """Whether `need` more bytes fit once every unpinned blob is removed."""
    return sum(b.size for h, b in blobs.items() if h in pinned) + need <= quota
