"""A NuNet-shaped job from request-service through job-completed, between two real daemons, as NuNet's
service provider dashboard runs it: quote, `send-status` success on the websocket, frames read by keys
NuNet defines (top-level `stdout`), then `terminate-job` as nunet-py sends it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.nunet.client import NuNetClient, log_text
from tests.nunet.test_routes import ADA, NUNET_JOB, NUNET_PARAMS
from tests.procs import DmsProcess, post, wait_for

TX = "0x" + "cd" * 32


def onboard(d: DmsProcess, share: float) -> None:
    m = d.get("/api/v1/onboarding/provisioned")
    body = {"memory": int(m["memory"] * share), "cpu": int(m["cpu"] * share), "channel": "nunet-test",
            "payment_addr": ADA, "cardano": False, "server_mode": True}  # fmt: skip
    post(d, "/onboarding/onboard", body)


async def frames_until(ws: aiohttp.ClientWebSocketResponse, *actions: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await ws.receive_json(timeout=90)
        frames.append(frame)
        if frame["action"] in actions:
            return frames


@pytest.fixture
def pair(dms_process: Callable[..., DmsProcess]) -> tuple[DmsProcess, DmsProcess]:
    cp = dms_process("cp").start()
    onboard(cp, 0.5)
    addr = cp.get("/api/v1/peers/self")["Addrs"][0]
    sp = dms_process("sp", p2p={"bootstrap_peers": [addr]}).start()
    onboard(sp, 0.2)
    cp_id = cp.get("/api/v1/peers/self")["ID"]
    wait_for(lambda: cp_id in sp.get("/api/v1/peers/dht"), 15, "the SP has the CP's record")
    return cp, sp


async def test_nunet_job_through_job_completed(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    cp_id = cp.get("/api/v1/peers/self")["ID"]
    async with aiohttp.ClientSession(base_url=sp.url) as http:
        nunet = NuNetClient(http)
        assert cp_id in [p["ID"] for p in await nunet.ok("GET", "/peers")]
        (record,) = [r for r in await nunet.ok("GET", "/peers/dht/dump") if r["peer_id"] == cp_id]
        assert record["tokenomics_addrs"] == ADA and record["is_available"] is True
        assert record["available_resources"]["tot_cpu_hz"] > 0

        # A first request left unpaid is replaced by the next, as in NuNet, so send-status finds one quote.
        await nunet.ok("POST", "/run/request-service", NUNET_JOB)
        job = {**NUNET_JOB, "params": {**NUNET_PARAMS, "packages": ["hello", "from", "nunet"]}}
        quote = await nunet.ok("POST", "/run/request-service", job)
        assert quote["compute_provider_addr"] == ADA
        assert quote["estimated_price"] == pytest.approx(0.4824)

        async with http.ws_connect("/api/v1/run/deploy") as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello == {**hello, "action": "connected"} and isinstance(hello["message"], str)
            status = {"Transaction_Type": "fund", "TRANSACTION_STATUS": "success", "tx_hash": TX}  # Go: any case
            await ws.send_json({"action": "send-status", "message": status})
            frames = await frames_until(ws, "job-completed", "job-failed")
        actions = [f["action"] for f in frames]
        assert actions[0] == "job-submitted" and actions[-1] == "job-completed", frames
        response = next(f for f in frames if f["action"] == "deployment-response")
        assert response["message"]["success"] is True and isinstance(response["message"]["content"], str)
        # NuNet's command: [model_url, packages joined by spaces] -> `echo "hello from nunet"`
        assert log_text(frames, "stdout") == "hello from nunet\n"
        assert frames[-1]["message"] is None

        reward = await nunet.ok("POST", "/transactions/request-reward", {"tx_hash": TX})
        assert reward["compute_provider_addr"] == ADA and isinstance(reward["service_provider_addr"], str)

        # nunet-py's terminate-job: the running job on this connection ends, told as job-failed (a string).
        said = await nunet.ok("GET", "/peers/depreq", peerID=cp_id)
        assert said["message"] == f"Successfully set {cp_id} as default deployment request receiver."
        sleeper = {**NUNET_JOB, "params": {**NUNET_PARAMS, "model_url": "sleep", "packages": ["60"]}}
        await nunet.ok("POST", "/run/request-service", sleeper)
        async with http.ws_connect("/api/v1/run/deploy") as ws:
            await ws.receive_json(timeout=10)
            status = {"transaction_type": "fund", "transaction_status": "success", "tx_hash": "0x" + "ef" * 32}
            await ws.send_json({"action": "send-status", "message": status})
            await frames_until(ws, "deployment-response")
            await ws.send_json({"action": "terminate-job"})
            end = (await frames_until(ws, "job-completed", "job-failed"))[-1]
        assert end["action"] == "job-failed" and isinstance(end["message"], str)
