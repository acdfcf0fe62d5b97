"""The artifact store's clean-up rules (pure) and the store on a real disk."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dms.artifacts import ArtifactNotFound, ArtifactStore, ArtifactTooLarge, BadHash, QuotaExceeded, StoreLimits
from dms.artifacts.cleanup import BlobInfo, plan_cleanup


def blobs(**kw: tuple[int, float]) -> dict[str, BlobInfo]:
    return {k: BlobInfo(size, used) for k, (size, used) in kw.items()}


def test_expired_go_unless_pinned() -> None:
    b = blobs(old=(10, 0), pinned_old=(10, 0), fresh=(10, 95))
    assert plan_cleanup(b, {"pinned_old"}, now=100, max_age_s=50, quota=1000) == ["old"]


def test_over_quota_least_recently_used_first_pins_kept() -> None:
    b = blobs(a=(40, 1), b=(40, 2), c=(40, 3), d=(40, 4))
    assert plan_cleanup(b, set(), now=10, max_age_s=100, quota=100) == ["a", "b"]
    assert plan_cleanup(b, {"a"}, now=10, max_age_s=100, quota=100) == ["b", "c"]
    # room for 50 more bytes
    assert plan_cleanup(b, set(), now=10, max_age_s=100, quota=100, need=50) == ["a", "b", "c"]
    # all pinned: nothing can go
    assert plan_cleanup(b, set(b), now=10, max_age_s=0, quota=0) == []


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_store_names_blobs_by_hash_and_keeps_quota(tmp_path: Path) -> None:
    clock = Clock()
    store = ArtifactStore(tmp_path, StoreLimits(quota=250, max_age_s=3600), clock)
    store.open()
    a = await store.put(chunks(b"x" * 50, b"y" * 50), max_size=1000)
    assert a.sha256 == hashlib.sha256(b"x" * 50 + b"y" * 50).hexdigest() and a.size == 100
    assert store.path(a.sha256).read_bytes() == b"x" * 50 + b"y" * 50
    with pytest.raises(ArtifactTooLarge):
        await store.put(chunks(b"z" * 101), max_size=100)
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing left of the refused upload
    store.pin("job-1", {a.sha256})
    clock.now += 10
    b = await store.put(chunks(b"b" * 100), max_size=1000)
    with pytest.raises(QuotaExceeded):  # a (pinned) + 200 > 250 whatever goes
        await store.put(chunks(b"c" * 200), max_size=1000)
    clock.now += 10
    c = await store.put(chunks(b"c" * 100), max_size=1000)  # b (unpinned, older) makes room
    assert {x.sha256 for x in store.all()} == {a.sha256, c.sha256}
    with pytest.raises(ArtifactNotFound):
        store.path(b.sha256)
    with pytest.raises(BadHash):
        store.path("../../etc/passwd")
    clock.now += 7200  # both expire; the pinned one stays
    assert await store.clean() == [c.sha256]
    store.unpin("job-1")
    assert await store.clean() == [a.sha256]
    # a restarted store finds what is on disk
    d = await store.put(chunks(b"d"), max_size=10)
    again = ArtifactStore(tmp_path, StoreLimits(quota=250, max_age_s=3600), clock)
    again.open()
    assert [x.sha256 for x in again.all()] == [d.sha256]
