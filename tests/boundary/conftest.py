"""A real daemon (in this process, on an ephemeral loopback port) for the browser-boundary tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dms.app import Daemon
from tests.conftest import make_settings

TOKEN = "s3cret-token-for-the-boundary-tests"
FOREIGN = "http://evil.example"
DASHBOARD = "http://localhost:9992"


def error_code(body: Any) -> str:
    """The error's code in either of dms's shapes: `{"error": {"code"}}` or NuNet's `{"error": "...", "code"}`."""
    if isinstance(body.get("error"), dict):
        return str(body["error"]["code"])
    return str(body["code"])


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(make_settings(tmp_path / "data", rest={"hostnames": ["dms.lan"]}), "test")
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def token_node(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(make_settings(tmp_path / "data", rest={"api_token": TOKEN}), "test")
    await d.start()
    yield d
    await d.stop()
