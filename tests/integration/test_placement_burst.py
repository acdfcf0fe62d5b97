"""12.4: the SP counts what it placed and the providers' adverts cannot show yet, so a burst of requests
spreads over the providers instead of all going to the best one (real SQLite; no job runs)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dms.errors import Conflict
from dms.jobs.requester import RequesterService, RequesterSettings
from dms.jobs.transport import LineStream, PeerUnreachable
from dms.matching import Candidate
from dms.payments.gate import NoPayments
from dms.store.db import Store
from dms.store.jobs import EventLog, JobStore, TransactionLog
from dms.store.models import SPJobRow
from tests.integration.jobpair import job


class Nowhere:
    async def open(self, peer_id: str, protocol: str) -> LineStream:
        raise PeerUnreachable(f"no network in this test ({peer_id})")


@pytest.fixture
async def requester(tmp_path: Path) -> AsyncIterator[RequesterService]:
    store = Store(tmp_path)
    await store.open()
    providers = [  # A is cheaper; each has room for four 500 MHz jobs
        Candidate("cp-a", "nunet-test", True, 2000, 4, 4000, (), 1000, ("docker",), disk_mb=100_000),
        Candidate("cp-b", "nunet-test", True, 2000, 4, 4000, (), 2000, ("docker",), disk_mb=100_000),
    ]

    async def channel() -> str:
        return "nunet-test"

    service = RequesterService(
        JobStore(store, SPJobRow), EventLog(store), lambda: providers, channel, Nowhere(),
        RequesterSettings(heartbeat_s=0.5), NoPayments(), TransactionLog(store),
    )  # fmt: skip
    await service.start()
    yield service
    await service.stop()
    await store.close()


async def test_a_burst_fills_the_best_provider_then_the_next(requester: RequesterService) -> None:
    quotes = [await requester.request_service(job("true"), None) for _ in range(8)]
    placed = Counter(q["compute_provider"]["peer_id"] for q in quotes)
    assert placed == {"cp-a": 4, "cp-b": 4}
    # both look full with what is in flight: the adverts decide, so the best one is quoted again
    assert (await requester.request_service(job("true"), None))["compute_provider"]["peer_id"] == "cp-a"
    await requester.cancel(quotes[4]["job_id"])  # an ended job holds nothing: B has room again
    assert (await requester.request_service(job("true"), None))["compute_provider"]["peer_id"] == "cp-b"
    with pytest.raises(Conflict) as nobody:  # no advert fits: refused, with the reason
        await requester.request_service(job("true", resources={"cpu_mhz": 3000}), None)
    assert nobody.value.code == "no_provider"


async def test_requests_at_once_spread_too(requester: RequesterService) -> None:
    """Placements count from the moment they are chosen, not once their rows are stored: requests that
    arrive together (the burst bench's 50) do not all pick the provider that looked best to each."""
    quotes = await asyncio.gather(*(requester.request_service(job("true"), None) for _ in range(8)))
    assert Counter(q["compute_provider"]["peer_id"] for q in quotes) == {"cp-a": 4, "cp-b": 4}
