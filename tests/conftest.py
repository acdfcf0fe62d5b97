"""Shared fixtures: a real daemon in this process (ephemeral port) and real daemon processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dms.app import Daemon
from dms.config import Settings
from tests.procs import DmsProcess

# A payout address with mixed case: valid EIP-55.
PAYOUT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def make_settings(data_dir: Path, **sections: dict[str, Any]) -> Settings:
    raw: dict[str, Any] = {
        "general": {"data_dir": str(data_dir)},
        "rest": {"addr": "127.0.0.1", "port": 0},
        "p2p": {"listen_address": ["/ip4/127.0.0.1/tcp/0"], "heartbeat_s": 1},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return Settings(**raw)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(make_settings(tmp_path / "data"), "test")
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def http(daemon: Daemon) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=daemon.url) as s:
        yield s


@pytest.fixture
def dms_process(tmp_path: Path) -> Iterator[Callable[..., DmsProcess]]:
    """Factory of daemon processes; every one started is killed at the end of the test."""
    made: list[DmsProcess] = []

    def factory(name: str = "dms", **kw: Any) -> DmsProcess:
        p = DmsProcess(tmp_path, name, **kw)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.stop()
