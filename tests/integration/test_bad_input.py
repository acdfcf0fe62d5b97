"""Every kind of bad input gets a 4xx in the one error shape, names the field, and changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dms.app import Daemon
from tests.conftest import PAYOUT

API = "/api/v1"


def snapshot(daemon: Daemon) -> tuple[Any, ...]:
    """Everything onboarding persists: the store's rows and the metadata file's bytes."""
    data_dir = daemon.settings.general.data_dir
    with sqlite3.connect(data_dir / "dms.sqlite3") as db:
        rows = tuple(db.execute(f"SELECT * FROM {t}").fetchall() for t in ("onboarding", "allocations"))
    meta = Path(data_dir / "metadataV2.json")
    return rows, meta.read_bytes() if meta.exists() else None


@pytest.fixture
async def good(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{API}/onboarding/provisioned") as r:
        m = await r.json()
    return {"memory": m["memory"] // 2, "cpu": m["cpu"] // 2, "channel": "nunet-test", "payment_addr": PAYOUT}


async def assert_refused(
    http: aiohttp.ClientSession, daemon: Daemon, method: str, path: str, status: int, field: str | None, **kw: Any
) -> dict[str, Any]:
    before = snapshot(daemon)
    async with http.request(method, API + path, **kw) as r:
        body = await r.json()
        assert r.status == status, body
    # NuNet's `{"error": "<message>"}`, with dms's code and details beside it
    assert set(body) == {"error", "code", "details"} and isinstance(body["error"], str) and body["error"]
    if field is not None:
        fields = [d["field"] for d in body["details"]]
        assert field in fields, body
        assert field in body["error"]
    assert snapshot(daemon) == before
    # The daemon keeps serving.
    async with http.get(f"{API}/onboarding/status") as r:
        assert r.status == 200
    return {"code": body["code"], "message": body["error"], "details": body["details"]}


ONBOARD_CASES = [
    ("memory as a string", {"memory": "1000"}, "memory"),
    ("cpu as a float", {"cpu": 1.5}, "cpu"),
    ("missing channel", {"channel": None}, "channel"),
    ("unknown channel", {"channel": "nunet-moon"}, "channel"),
    ("wrong EIP-55 checksum", {"payment_addr": PAYOUT.replace("aA", "Aa", 1)}, "payment_addr"),
    (
        "Cardano stake address",
        {"payment_addr": "stake1uyehkck0lajq8gr28t9uxnuvgcqrc6070x3k9r8048z8y5gh6ffgw"},
        "payment_addr",
    ),
    ("not an address", {"payment_addr": "0x1234"}, "payment_addr"),
    ("negative price", {"ntx_price": -1}, "ntx_price"),
    ("GPU not detected", {"gpus": [0]}, "gpus"),
    ("is_available as a string", {"is_available": "yes"}, "is_available"),
]


@pytest.mark.parametrize(("case", "change", "field"), ONBOARD_CASES, ids=[c[0] for c in ONBOARD_CASES])
async def test_onboard_field_errors(
    http: aiohttp.ClientSession, daemon: Daemon, good: dict[str, Any], case: str, change: dict[str, Any], field: str
) -> None:
    body = {**good, **change}
    body = {k: v for k, v in body.items() if v is not None}
    await assert_refused(http, daemon, "POST", "/onboarding/onboard", 400, field, json=body)


@pytest.mark.parametrize("share", [0.05, 0.95])
async def test_reservation_out_of_range(
    http: aiohttp.ClientSession, daemon: Daemon, good: dict[str, Any], share: float
) -> None:
    async with http.get(f"{API}/onboarding/provisioned") as r:
        m = await r.json()
    for key in ("cpu", "memory"):
        err = await assert_refused(
            http, daemon, "POST", "/onboarding/onboard", 400, key, json={**good, key: int(m[key] * share)}
        )
        assert "10-90 %" in err["message"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"", "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
async def test_malformed_bodies(http: aiohttp.ClientSession, daemon: Daemon, raw: bytes, code: str) -> None:
    err = await assert_refused(http, daemon, "POST", "/onboarding/onboard", 400, None, data=raw)
    assert err["code"] == code


async def test_body_over_one_mib(http: aiohttp.ClientSession, daemon: Daemon, good: dict[str, Any]) -> None:
    huge = {**good, "channel": "x" * (1024 * 1024 + 10)}
    err = await assert_refused(http, daemon, "POST", "/onboarding/onboard", 413, None, json=huge)
    assert err["code"] == "payload_too_large"


async def test_resource_config_errors(http: aiohttp.ClientSession, daemon: Daemon, good: dict[str, Any]) -> None:
    await assert_refused(http, daemon, "POST", "/onboarding/resource-config", 409, None, json={"cpu": good["cpu"]})
    async with http.post(f"{API}/onboarding/onboard", json=good) as r:
        assert r.status == 200
    await assert_refused(http, daemon, "POST", "/onboarding/resource-config", 400, "cpu", json={"cpu": 1})
    await assert_refused(http, daemon, "POST", "/onboarding/resource-config", 400, "memory", json={"memory": "lots"})
    # NuNet's route reads bodies as Go does: an unknown key is ignored, so this one asks for no change at all
    err = await assert_refused(http, daemon, "POST", "/onboarding/resource-config", 400, None, json={"swap_mb": 5})
    assert "nothing to change" in err["message"]
    await assert_refused(http, daemon, "POST", "/onboarding/resource-config", 400, None, json={})


async def test_bad_query_and_method_and_path(http: aiohttp.ClientSession, daemon: Daemon, good: dict[str, Any]) -> None:
    async with http.post(f"{API}/onboarding/onboard", json=good) as r:
        assert r.status == 200
    await assert_refused(http, daemon, "POST", "/onboarding/offboard", 400, "force", params={"force": "maybe"})
    await assert_refused(http, daemon, "DELETE", "/onboarding/status", 405, None)
    err = await assert_refused(http, daemon, "GET", "/onboarding/nothing-here", 404, None)
    assert "/api/v1/onboarding/nothing-here" in err["message"]
    await assert_refused(http, daemon, "POST", "/device/status", 400, "is_available", json={"is_available": 1})
