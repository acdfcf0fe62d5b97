"""Hostile input against a real daemon process: deep nesting and huge numbers get a 4xx or an `error` frame.

The crash this guards against: py_ecc (imported by eth-account and web3) raises the recursion limit to
100,000, after which a 100,000-deep JSON body overflowed the C stack (SIGSEGV) instead of raising.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.procs import DmsProcess, free_port

ESCROW = {
    # Nothing is sent to the chain until a payment is checked, so an unused loopback port will do.
    "mode": "escrow", "rpc_url": f"http://127.0.0.1:{free_port()}", "chain_id": 31337,
    "escrow_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
}  # fmt: skip


def post_raw(d: DmsProcess, path: str, data: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(d.url + "/api/v1" + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_deep_body_in_escrow_mode_is_refused_and_the_daemon_keeps_serving(
    dms_process: Callable[..., DmsProcess],
) -> None:
    d = dms_process(payment=ESCROW).start()
    assert "address" in d.get("/api/v1/onboarding/address/new?blockchain=ethereum")  # imports eth-account
    for body, what in [
        (b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested 50000 levels deep"),
        (b'{"image": "x", "duration_s": ' + b"9" * 5000 + b"}", "a number of 5000 digits"),
        (b'{"image": "x", "duration_s": 1e999}', "out of range"),
    ]:
        status, answer = post_raw(d, "/run/request-service", body)
        assert status == 400, answer
        assert answer["code"] == "invalid_json" and what in answer["error"], answer
    assert d.proc is not None and d.proc.poll() is None, d.log()
    assert d.get("/api/v1/onboarding/status")["onboarded"] is False


async def test_websocket_refuses_huge_numbers_and_stays_open(dms_process: Callable[..., DmsProcess]) -> None:
    d = dms_process().start()
    async with aiohttp.ClientSession() as http, http.ws_connect(d.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        frames = [
            ('{"action": "subscribe", "job_id": "j", "after_seq": ' + "7" * 5000 + "}", "a number of 5000 digits"),
            (json.dumps({"action": "subscribe", "job_id": "j", "after_seq": 2**70}), "after_seq"),
            ("[" * 10_000 + "]" * 10_000, "nested 10000 levels deep"),
            ('{"action": "cancel", "job_id": "j", "message": ' + "[" * 33 + "]" * 33 + "}", "nested 34 levels"),
        ]
        for text, what in frames:
            await ws.send_str(text)
            answer = await ws.receive_json(timeout=10)
            assert answer["action"] == "error" and what in answer["message"], answer
        # Still open and still answering.
        await ws.send_str(json.dumps({"action": "subscribe", "job_id": "no-such-job"}))
        answer = await ws.receive_json(timeout=10)
        assert answer["action"] == "error" and "no-such-job" in answer["message"], answer
        assert not ws.closed
