"""The holder's side of the direct path (ArtifactTransfer.serve) when the asker is gone before the offer."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from dms.artifacts import ArtifactStore, ArtifactTransfer, StoreLimits
from dms.artifacts.direct import ACCEPT_TIMEOUT_S
from dms.network.errors import StreamClosed


class GoneAsker:
    """A stream whose asker asks for the direct path and is gone before the answer can reach it."""

    remote_peer = "asker"
    remote_host = "127.0.0.1"

    def __init__(self, request: dict[str, object]) -> None:
        self._request = json.dumps(request).encode()
        self.answers = 0

    async def receive(self, wait_s: float) -> bytes:
        return self._request

    async def send(self, data: bytes) -> None:
        self.answers += 1
        raise StreamClosed("the peer closed the stream")

    async def receive_bytes(self, limit: int, wait_s: float) -> bytes:
        return b""

    async def close(self) -> None:
        return None


class NoOpener:
    async def open(self, peer_id: str, protocol: str) -> GoneAsker:
        raise AssertionError("the holder opens nothing")


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_an_asker_gone_before_the_offer_stops_the_waiting_sender_and_unpins(tmp_path: Path) -> None:
    """The sending thread waits at the listener while the offer goes out; when the offer cannot be sent,
    it is stopped at once (not left to wait ACCEPT_TIMEOUT_S) and the blob is unpinned."""
    store = ArtifactStore(tmp_path, StoreLimits(quota=64 << 20, max_age_s=3600))
    store.open()
    art = await store.put(chunks(os.urandom(2 << 20)), 64 << 20)
    transfer = ArtifactTransfer(store, NoOpener(), stall_s=5.0, max_size=64 << 20, direct_host="127.0.0.1")
    asker = GoneAsker({"sha256": art.sha256, "offset": 0, "direct": True})
    t0 = time.monotonic()
    await transfer.serve(asker)
    assert time.monotonic() - t0 < ACCEPT_TIMEOUT_S / 2
    assert asker.answers == 1  # the offer was tried, once
    assert store.pinned() == frozenset()
    assert transfer.stats.direct == 0 and transfer.stats.served == 0 and transfer.stats.bytes_out == 0
