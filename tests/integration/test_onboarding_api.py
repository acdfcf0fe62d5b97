"""Onboarding through the REST API of a real daemon on an ephemeral port."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from dms.app import Daemon
from dms.onboarding.rules import Resources
from dms.store.allocations import AllocationStore
from dms.store.db import Store
from tests.conftest import PAYOUT, make_settings

API = "/api/v1"


async def half_of_machine(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{API}/onboarding/provisioned") as r:
        assert r.status == 200
        machine = await r.json()
    return {
        "memory": machine["memory"] // 2,
        "cpu": machine["cpu"] // 2,
        "channel": "nunet-test",
        "payment_addr": PAYOUT,
        "ntx_price": 1000,
    }


async def test_provisioned_reports_the_machine(http: aiohttp.ClientSession) -> None:
    import psutil

    async with http.get(f"{API}/onboarding/provisioned") as r:
        body = await r.json()
    assert body["total_cores"] == psutil.cpu_count()
    assert body["memory"] == psutil.virtual_memory().total // 2**20
    assert body["cpu"] >= body["total_cores"] * 100  # some clock per core, in MHz
    assert body["disk"] > 0
    assert body["gpus"] == []  # no GPU on the test machines


async def test_onboard_then_status_and_metadata(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    req = await half_of_machine(http)
    async with http.post(f"{API}/onboarding/onboard", json=req) as r:
        assert r.status == 200, await r.text()
        out = await r.json()
    assert out["onboarded"] is True
    async with http.get(f"{API}/onboarding/provisioned") as r:
        disk = (await r.json())["disk"]
    # NuNet's onboarding names no disk: the smallest allowed share (10 %) is reserved for jobs' /workspace.
    assert out["reserved"] == {"cpu": req["cpu"], "memory": req["memory"], "disk": -(-disk // 10), "gpus": []}
    assert out["free"] == out["reserved"]

    async with http.get(f"{API}/onboarding/status") as r:
        status = await r.json()
    assert status["onboarded"] is True and status["channel"] == "nunet-test"
    assert status["payment_addr"] == PAYOUT and status["ntx_price"] == 1000

    async with http.get(f"{API}/onboarding/metadata") as r:
        meta = await r.json()
    on_disk = json.loads(Path(status["metadata_path"]).read_text())
    assert meta == on_disk
    assert meta["reserved"] == {"cpu": req["cpu"], "memory": req["memory"]}
    assert meta["network"] == "nunet-test"

    # Onboarding again with new settings replaces them, as NuNet's CLI expects ("onboard again?").
    async with http.post(f"{API}/onboarding/onboard", json={**req, "cpu": req["cpu"] + 1}) as r:
        assert r.status == 200
        again = await r.json()
    assert again["reserved"]["cpu"] == req["cpu"] + 1 and again["onboarded_at"] == out["onboarded_at"]


async def test_resource_config_refuses_to_go_below_running_jobs(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    req = await half_of_machine(http)
    async with http.post(f"{API}/onboarding/onboard", json=req) as r:
        assert r.status == 200

    store = Store(daemon.settings.general.data_dir)
    await store.open()
    try:
        await AllocationStore(store).hold("job-1", Resources(cpu_mhz=req["cpu"] - 10, memory_mb=100))
        async with http.post(f"{API}/onboarding/resource-config", json={"cpu": req["cpu"] - 20}) as r:
            assert r.status == 400
            err = await r.json()
        assert err["details"][0]["field"] == "cpu"
        assert "running jobs hold" in err["error"]

        # The job's share shows as not free.
        async with http.get(f"{API}/onboarding/status") as r:
            status = await r.json()
        assert status["reserved"]["cpu"] == req["cpu"]
        assert status["free"]["cpu"] == 10

        # Offboarding is refused while the job runs, unless forced.
        async with http.post(f"{API}/onboarding/offboard") as r:
            assert r.status == 409
            assert (await r.json())["code"] == "jobs_running"
        await AllocationStore(store).release("job-1")
    finally:
        await store.close()

    async with http.post(f"{API}/onboarding/resource-config", json={"memory": req["memory"] - 100}) as r:
        assert r.status == 200
        assert (await r.json())["reserved"]["memory"] == req["memory"] - 100


async def test_offboard_removes_record_and_metadata(http: aiohttp.ClientSession) -> None:
    req = await half_of_machine(http)
    async with http.post(f"{API}/onboarding/onboard", json=req) as r:
        assert r.status == 200
    async with http.get(f"{API}/onboarding/status") as r:
        meta_path = Path((await r.json())["metadata_path"])
    assert meta_path.exists()

    async with http.post(f"{API}/onboarding/offboard", params={"force": "false"}) as r:
        assert r.status == 200
    assert not meta_path.exists()
    async with http.get(f"{API}/onboarding/status") as r:
        assert (await r.json())["onboarded"] is False
    async with http.get(f"{API}/onboarding/metadata") as r:
        assert r.status == 409
        assert (await r.json())["code"] == "not_onboarded"


async def test_device_availability(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{API}/device/status") as r:
        assert r.status == 409  # not onboarded yet
    req = await half_of_machine(http)
    async with http.post(f"{API}/onboarding/onboard", json={**req, "is_available": False}) as r:
        assert r.status == 200
    async with http.get(f"{API}/device/status") as r:
        assert await r.json() == {"online": False, "is_available": False}
    async with http.post(f"{API}/device/status", json={"is_available": True}) as r:
        assert await r.json() == {"message": "Device status successfully changed to online", "is_available": True}
    async with http.get(f"{API}/onboarding/metadata") as r:
        assert (await r.json())["is_available"] is True


async def test_new_address_is_a_fresh_key_pair(http: aiohttp.ClientSession) -> None:
    from eth_account import Account

    async with http.get(f"{API}/onboarding/address/new", params={"blockchain": "ethereum"}) as r:
        one = await r.json()
    async with http.get(f"{API}/onboarding/address/new", params={"blockchain": "ethereum"}) as r:
        two = await r.json()
    assert one["address"] != two["address"]
    assert Account.from_key(one["private_key"]).address == one["address"]
    async with http.get(f"{API}/onboarding/address/new") as r:  # NuNet's default: cardano
        ada = await r.json()
    assert set(ada) == {"address", "mnemonic"} and ada["address"].startswith("addr1q")
    assert len(ada["mnemonic"].split()) == 24
    async with http.get(f"{API}/onboarding/address/new", params={"blockchain": "bitcoin"}) as r:
        assert r.status == 400
        assert "bitcoin" in (await r.json())["error"]


async def test_openapi_and_swagger(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{API}/openapi.json") as r:
        spec = await r.json()
    assert spec["openapi"].startswith("3.")
    onboard = spec["paths"]["/api/v1/onboarding/onboard"]["post"]
    ref = onboard["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"memory", "cpu", "channel", "payment_addr"} <= set(body["required"])
    async with http.get("/swagger") as r:
        page = await r.text()
    assert "swagger-ui-bundle.js" in page
    async with http.get("/swagger/static/swagger-ui-bundle.js") as r:
        assert r.status == 200
        assert len(await r.read()) > 100_000


async def test_an_onboarding_from_before_disk_gets_the_default_disk_share(tmp_path: Path) -> None:
    """Migration 0003 leaves disk 0 on an existing onboarding; the next start reserves the default share."""
    settings = make_settings(tmp_path / "data")
    first = Daemon(settings)
    await first.start()
    try:
        async with aiohttp.ClientSession(base_url=first.url) as http:
            req = await half_of_machine(http)
            async with http.post(f"{API}/onboarding/onboard", json={**req, "disk": 0}) as r:
                assert r.status == 400 and "disk" in (await r.json())["error"]
            async with http.post(f"{API}/onboarding/onboard", json=req) as r:
                default = (await r.json())["reserved"]["disk"]
    finally:
        await first.stop()
    with sqlite3.connect(tmp_path / "data" / "dms.sqlite3") as db:
        db.execute("UPDATE onboarding SET disk_mb = 0")  # as migration 0003 leaves an older onboarding
    again = Daemon(settings)
    await again.start()
    try:
        async with aiohttp.ClientSession(base_url=again.url) as http, http.get(f"{API}/onboarding/status") as r:
            status = await r.json()
        assert status["reserved"]["disk"] == status["free"]["disk"] == default > 0
    finally:
        await again.stop()
