"""Every number a client or peer sends has an upper bound a real machine or chain reaches, and OpenAPI says so."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from dms import limits
from dms.app import Daemon
from dms.jobs.protocol import ProtocolError, decode_to_provider, decode_to_requester
from tests.integration.test_bad_input import API, assert_refused

JOB: dict[str, Any] = {
    "image": "dms-test/busybox:1",
    "resources": {"cpu_mhz": 100, "cores": 0.5, "memory_mb": 64},
    "max_price": 10**18,
    "duration_s": 60,
}


def numeric_properties(spec: dict[str, Any], name: str, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """(model.field, schema) for every integer or number property of `name` and the models it refers to."""
    if name in seen:
        return []
    seen.add(name)
    found = []
    for field, prop in spec["components"]["schemas"][name].get("properties", {}).items():
        for sub in [
            prop,
            prop.get("items", {}),
            *prop.get("anyOf", []),
            *[a.get("items", {}) for a in prop.get("anyOf", [])],
        ]:
            if sub.get("type") in ("integer", "number"):
                found.append((f"{name}.{field}", sub))
            ref = sub.get("$ref") or sub.get("items", {}).get("$ref")
            if ref:
                found += numeric_properties(spec, ref.rsplit("/", 1)[1], seen)
    return found


async def test_openapi_declares_a_maximum_for_every_number_in_a_request(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{API}/openapi.json") as r:
        spec = await r.json()
    schemas = [
        op["requestBody"]["content"]["application/json"]["schema"]
        for path in spec["paths"].values()
        for op in path.values()
        if "requestBody" in op
    ]
    bodies = {ref["$ref"].rsplit("/", 1)[1] for schema in schemas for ref in schema.get("oneOf", [schema])}
    assert {"OnboardBody", "ResourceConfigBody", "RequestServiceBody"} <= bodies
    seen: set[str] = set()
    fields = [f for body in sorted(bodies) for f in numeric_properties(spec, body, seen)]
    names = {name for name, _ in fields}
    assert {
        "RequestServiceBody.max_price",
        "JobResources.vram_mb",
        "OnboardBody.ntx_price",
        "OnboardBody.gpus",
    } <= names
    unbounded = [name for name, schema in fields if "maximum" not in schema and "exclusiveMaximum" not in schema]
    assert unbounded == []
    maxima = dict(fields)
    assert maxima["RequestServiceBody.max_price"]["maximum"] == limits.MAX_WEI < 10**30
    assert maxima["JobResources.vram_mb"]["maximum"] == limits.MAX_VRAM_MB


TOO_BIG = [
    ("max_price", {"max_price": 10**30}),
    ("resources.vram_mb", {"resources": {**JOB["resources"], "vram_mb": 10**30}}),
    ("resources.memory_mb", {"resources": {**JOB["resources"], "memory_mb": limits.MAX_MEMORY_MB + 1}}),
    ("resources.cpu_mhz", {"resources": {**JOB["resources"], "cpu_mhz": 10**30}}),
    ("resources.gpus", {"resources": {**JOB["resources"], "gpus": 10**6}}),
    ("duration_s", {"duration_s": 10**30}),
]


@pytest.mark.parametrize(("field", "change"), TOO_BIG, ids=[f for f, _ in TOO_BIG])
async def test_request_service_refuses_numbers_past_their_bound(
    http: aiohttp.ClientSession, daemon: Daemon, field: str, change: dict[str, Any]
) -> None:
    err = await assert_refused(http, daemon, "POST", "/run/request-service", 400, field, json={**JOB, **change})
    assert "less than or equal" in err["message"]


@pytest.mark.parametrize(
    ("field", "body"),
    [("ntx_price", {"ntx_price": 10**30}), ("memory", {"memory": 10**30}), ("gpus.0", {"gpus": [10**6]})],
)
async def test_onboarding_refuses_numbers_past_their_bound(
    http: aiohttp.ClientSession, daemon: Daemon, field: str, body: dict[str, Any]
) -> None:
    good = {"memory": 1000, "cpu": 1000, "channel": "nunet-test", "payment_addr": "0x" + "0" * 40}
    await assert_refused(http, daemon, "POST", "/onboarding/onboard", 400, field, json={**good, **body})


def test_peer_messages_refuse_numbers_past_their_bound() -> None:
    with pytest.raises(ProtocolError, match="after_seq"):
        decode_to_provider(b'{"type": "attach", "job_id": "j", "after_seq": %d}' % 2**70)
    with pytest.raises(ProtocolError, match="seq"):
        decode_to_requester(b'{"type": "event", "job_id": "j", "seq": %d, "kind": "status", "data": {}}' % 2**64)
