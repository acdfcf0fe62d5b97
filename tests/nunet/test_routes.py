"""NuNet's routes, bodies and answers, driven as NuNet's clients drive them, against a real daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dms.app import Daemon
from tests.nunet.client import NuNetClient

# CIP-19's mainnet base address: a Cardano payout address as NuNet's users have them.
ADA = "addr1qx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzer3n0d3vllmyqwsx5wktcd8cc3sq835lu7drv2xwl2wywfgse35a3x"
ETH_LOWER = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"


@pytest.fixture
async def nunet(http: aiohttp.ClientSession) -> AsyncIterator[NuNetClient]:
    yield NuNetClient(http)


async def onboard_as_nunet_cli(nunet: NuNetClient, share: float = 0.5, **change: Any) -> dict[str, Any]:
    """`nunet onboard -m -c -n -a`: NuNet's CLI body, cut to whole MB/MHz, posted as a form."""
    prov = await nunet.ok("GET", "/onboarding/provisioned")
    body = {
        "memory": int(prov["memory"] * share),
        "cpu": int(prov["cpu"] * share),
        "channel": "nunet-test",
        "payment_addr": ADA,
        "cardano": False,
        "server_mode": True,
        **change,
    }
    return dict(await nunet.ok("POST", "/onboarding/onboard", body))


async def status_of(nunet: NuNetClient) -> dict[str, Any]:
    """NuNet's status always carries `error` (`"<nil>"` when healthy), so it is read as is."""
    code, out = await nunet.call("GET", "/onboarding/status")
    assert code == 200
    return dict(out)


async def test_version_where_nunets_cli_reads_it(nunet: NuNetClient, daemon: Daemon) -> None:
    doc = await nunet.ok("GET", "/swagger/doc.json")
    assert isinstance(doc["info"]["version"], str) and doc["info"]["version"]
    # The document says how NuNet's bodies are read, and that request-service takes both shapes.
    onboard = doc["paths"]["/api/v1/onboarding/onboard"]["post"]["requestBody"]
    assert "unknown keys are ignored" in onboard["description"]
    both = doc["paths"]["/api/v1/run/request-service"]["post"]["requestBody"]["content"]["application/json"]
    assert len(both["schema"]["oneOf"]) == 2


async def test_provisioned_and_wallets(nunet: NuNetClient) -> None:
    prov = await nunet.ok("GET", "/onboarding/provisioned")
    assert prov["cpu"] > 0 and prov["memory"] > 0 and prov["total_cores"] >= 1
    ada = await nunet.ok("GET", "/onboarding/address/new")  # NuNet's default: cardano
    assert ada["address"].startswith("addr1") and len(ada["mnemonic"].split()) == 24
    eth = await nunet.ok("GET", "/onboarding/address/new", blockchain="ethereum")
    assert eth["address"].startswith("0x") and len(eth["private_key"]) == 66


async def test_onboarding_lifecycle_as_nunets_cli_runs_it(nunet: NuNetClient) -> None:
    status = await status_of(nunet)
    assert status["onboarded"] is False and status["error"] == "<nil>"  # NuNet's healthy "no error"
    _, err = await nunet.error("GET", "/onboarding/metadata")
    assert "not onboarded" in err

    meta = await onboard_as_nunet_cli(nunet)
    assert meta["network"] == "nunet-test" and meta["public_key"] == ADA
    assert set(meta["reserved"]) >= {"cpu", "memory"} and set(meta["resource"]) >= {"cpu_max", "memory_max"}
    status = await status_of(nunet)
    assert status["onboarded"] is True and isinstance(status["machine_uuid"], str)
    assert status["metadata_path"].endswith(".json") and isinstance(status["database_path"], str)

    # Keys in any case, unknown keys ignored, as Go reads them.
    shape = {"Memory": meta["reserved"]["memory"] - 1, "CPU": meta["reserved"]["cpu"], "x": 1}
    changed = await nunet.ok("POST", "/onboarding/resource-config", shape)
    assert changed["reserved"]["memory"] == meta["reserved"]["memory"] - 1

    # "You are already onboarded. Do you want to onboard again with new settings?" -> yes
    again = await onboard_as_nunet_cli(nunet, 0.4, payment_addr=ETH_LOWER, server_mode=False, Channel="nunet-team")
    assert again["network"] == "nunet-team" and again["public_key"].lower() == ETH_LOWER

    assert (await nunet.ok("GET", "/device/status"))["online"] is True
    said = await nunet.ok("POST", "/device/status", {"is_available": False})  # curl's form type, JSON text
    assert said["message"] == "Device status successfully changed to offline"
    assert (await nunet.ok("GET", "/device/status"))["online"] is False

    bye = await nunet.ok("DELETE", "/onboarding/offboard", force="true")
    assert bye["forced"] is True and bye["message"] == "Successfully Offboarded"
    assert (await status_of(nunet))["onboarded"] is False


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"memory": 1, "cpu": 1, "channel": "nunet-test", "payment_addr": ADA}, "10-90 %"),
        ({"memory": "100", "cpu": 1000, "channel": "nunet-test", "payment_addr": ADA}, "memory"),
        ({"memory": 1000, "cpu": 1000, "channel": "nunet-moon", "payment_addr": ADA}, "channel"),
        ({"memory": 1000, "cpu": 1000, "channel": "nunet-test", "payment_addr": ADA[:-1] + "q"}, "checksum"),
        (
            {"memory": 1000, "cpu": 1000, "channel": "nunet-test",
             "payment_addr": "stake1uyehkck0lajq8gr28t9uxnuvgcqrc6070x3k9r8048z8y5gh6ffgw"},
            "stake",
        ),
    ],
)  # fmt: skip
async def test_onboarding_errors_are_nunet_strings(nunet: NuNetClient, body: dict[str, Any], says: str) -> None:
    status, err = await nunet.error("POST", "/onboarding/onboard", body)
    assert status == 400 and says in err
    assert (await status_of(nunet))["onboarded"] is False


async def test_peer_views_have_nunets_shapes(nunet: NuNetClient) -> None:
    me = await nunet.ok("GET", "/peers/self")
    assert isinstance(me["ID"], str) and isinstance(me["Addrs"], list) and me["Addrs"]
    assert await nunet.ok("GET", "/peers") == []  # alone: NuNet's array of {ID, Addrs}, empty
    assert await nunet.ok("GET", "/peers/dht") == [] and await nunet.ok("GET", "/peers/kad-dht") == []
    assert await nunet.ok("GET", "/peers/dht/dump") == []
    assert (await nunet.ok("GET", "/peers/depreq"))["message"] == "no default peer set"
    _, err = await nunet.error("GET", "/peers/depreq", peerID=me["ID"])
    assert err == "peerID can not be self peerID"
    _, err = await nunet.error("GET", "/peers/depreq", peerID="12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4")
    assert err.startswith("Peer not in DHT yet.")
    assert (await nunet.ok("GET", "/peers/depreq", peerID="0"))["message"] == "default peer successfully removed"


async def test_telemetry_and_transactions(nunet: NuNetClient) -> None:
    await onboard_as_nunet_cli(nunet)
    free = await nunet.ok("GET", "/telemetry/free")
    meta = await nunet.ok("GET", "/onboarding/metadata")
    assert free["tot_cpu_hz"] == meta["reserved"]["cpu"] and free["ram"] == meta["reserved"]["memory"]
    assert {"id", "price_cpu", "price_ram", "vcpu", "disk", "price_disk"} <= set(free)
    assert await nunet.ok("GET", "/transactions", size_done="0") == []
    status, err = await nunet.error("GET", "/transactions", size_done="lots")
    assert status == 400 and err == "invalid size_done parameter"
    status, err = await nunet.error("POST", "/transactions/request-reward", {"tx_hash": "0x" + "ab" * 32})
    assert status == 404 and err == "unknown tx hash"
    status, err = await nunet.error("POST", "/run/send-status", {"transaction_status": "success"})
    assert "awaiting payment" in err


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/vm/start-default"), ("POST", "/vm/start-custom"), ("GET", "/peers/chat"),
     ("GET", "/peers/chat/start"), ("GET", "/peers/file/send"), ("GET", "/peers/file/accept")],
)  # fmt: skip
async def test_routes_dms_does_not_offer_say_so(nunet: NuNetClient, method: str, path: str) -> None:
    status, err = await nunet.error(method, path, {} if method == "POST" else None)
    assert status == 501 and "does not offer" in err


NUNET_PARAMS: dict[str, Any] = {
    "image_id": "dms-test/busybox:1",
    "model_url": "echo",
    "packages": ["hi"],
    "machine_type": "cpu",
}
NUNET_JOB: dict[str, Any] = {
    "address_user": ADA,
    "max_ntx": 1,
    "blockchain": "Cardano",
    "service_type": "ml-training-cpu",
    "params": NUNET_PARAMS,
    "constraints": {"complexity": "Low", "cpu": 500, "ram": 64, "vram": 0, "power": 100, "time": 30},
}


async def test_request_service_reads_nunets_request(nunet: NuNetClient) -> None:
    await onboard_as_nunet_cli(nunet)
    # Over max_ntx (Low, 30 min, 100 W is 0.4824 NTX): NuNet's refusal, whatever the keys' case.
    shouting = {"MAX_NTX": 0, **{k: v for k, v in NUNET_JOB.items() if k != "max_ntx"},
                "Constraints": {"CPU": 500, "RAM": 64, "Power": 100, "TIME": 30, "Complexity": "Low"}}  # fmt: skip
    del shouting["constraints"]
    status, err = await nunet.error("POST", "/run/request-service", shouting)
    assert status == 400 and err == "nunet estimation price is greater than client price"
    # Within max_ntx: alone on the network, no provider fits; the answer is an error string.
    status, err = await nunet.error("POST", "/run/request-service", {**NUNET_JOB, "unknown": {"x": 1}})
    assert status in (404, 409) and "provider" in err
    # dms's own shape stays strict beside it.
    status, err = await nunet.error("POST", "/run/request-service", {"image": "x", "unknown": 1})
    assert status == 400 and "unknown" in err


async def test_websocket_speaks_nunets_frames(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect("/api/v1/run/deploy") as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["action"] == "connected" and isinstance(hello["message"], str)
        # NuNet's dashboard reports a pending payment; NuNet ignores it, so does dms (nothing to bind: error frame).
        await ws.send_json({"action": "send-status", "message": {"transaction_type": "fund",
                                                                 "transaction_status": "pending"}})  # fmt: skip
        frame = await ws.receive_json(timeout=10)
        assert frame["action"] == "error" and "awaiting payment" in frame["message"]
        await ws.send_json({"action": "terminate-job"})  # nunet-py's, with no job running here
        frame = await ws.receive_json(timeout=10)
        assert frame["action"] == "error" and "terminate-job" in frame["message"]
