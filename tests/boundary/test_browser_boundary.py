"""The browser boundary of a real daemon: what a page on another origin, a DNS-rebinding page and NuNet's
dashboards can and cannot do. Every state-changing route comes from the daemon's own OpenAPI document, so a
route added later is covered without editing this file."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from dms.app import Daemon
from tests.boundary.conftest import DASHBOARD, FOREIGN, error_code
from tests.conftest import PAYOUT

API = "/api/v1"
ACAO = "Access-Control-Allow-Origin"
# What a hostile page would post to each route to change the node; other routes get an empty object.
PAYLOADS: dict[str, dict[str, Any]] = {
    "/device/status": {"is_available": False},
    "/onboarding/resource-config": {"cpu": 500, "memory": 500},
    "/onboarding/onboard": {"cpu": 500, "memory": 500, "channel": "nunet-test", "payment_addr": PAYOUT},
    "/run/request-service": {"image": "dms-test/busybox:1", "command": ["true"], "max_price": 10**18},
}
# Besides the documented ones: NuNet's DELETE, the page's login, and methods no route has (refused before routing).
EXTRA_ROUTES = [("DELETE", "/onboarding/offboard"), ("POST", "/auth/login"), ("POST", "/auth/logout"),
                ("PUT", "/onboarding/onboard"), ("PATCH", "/device/status")]  # fmt: skip


async def onboard(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{API}/onboarding/provisioned") as r:
        machine = await r.json()
    req = {"memory": machine["memory"] // 4, "cpu": machine["cpu"] // 4, "channel": "nunet-test",
           "payment_addr": PAYOUT, "ntx_price": 1000}  # fmt: skip
    async with http.post(f"{API}/onboarding/onboard", json=req) as r:
        assert r.status == 200, await r.text()


async def snapshot(http: aiohttp.ClientSession) -> list[Any]:
    out = []
    for path in ("/onboarding/status", "/device/status", "/run/jobs", "/transactions", "/onboarding/metadata"):
        async with http.get(API + path) as r:
            assert r.status == 200, (path, await r.text())
            out.append(await r.json())
    return out


async def state_changing_routes(http: aiohttp.ClientSession) -> list[tuple[str, str]]:
    async with http.get(f"{API}/openapi.json") as r:
        spec = await r.json()
    routes = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path if path.startswith(API) else API + path))
        for path, ops in spec["paths"].items()
        for method in ops
        if method.upper() not in ("GET", "HEAD", "OPTIONS")
    ]
    assert len(routes) >= 5, routes  # onboard, resource-config, offboard, device status, request-service, cancel
    return routes + [(m, p if p.startswith("/auth") else API + p) for m, p in EXTRA_ROUTES]


def bodies(path: str) -> list[tuple[str, bytes]]:
    payload = next((v for k, v in PAYLOADS.items() if path.endswith(k)), {})
    form = "&".join(f"{k}={json.dumps(v).strip(chr(34))}" for k, v in payload.items())
    return [
        ("text/plain", json.dumps(payload).encode()),  # needs no preflight: the classic CSRF
        ("application/x-www-form-urlencoded", form.encode()),
        ("multipart/form-data; boundary=x", b"--x--\r\n"),
        ("application/json", json.dumps(payload).encode()),
    ]


async def test_foreign_origins_change_nothing_on_any_route(node: Daemon) -> None:
    port = int(node.url.rsplit(":", 1)[1])
    foreign_origins = [FOREIGN, "null", f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}",
                       f"http://evil.example:{port}", "http://localhost:9993"]  # fmt: skip
    async with aiohttp.ClientSession(base_url=node.url) as http:
        await onboard(http)
        before = await snapshot(http)
        routes = await state_changing_routes(http)
        tried = 0
        for method, path in routes:
            for origin in foreign_origins:
                for content_type, data in bodies(path):
                    headers = {"Origin": origin, "Content-Type": content_type}
                    async with http.request(method, path, data=data, headers=headers, params={"force": "true"}) as r:
                        body = await r.json()
                        assert r.status == 403, (method, path, origin, content_type, r.status, body)
                        assert error_code(body) == "origin_not_allowed"
                        assert ACAO not in r.headers
                    tried += 1
        assert tried == len(routes) * len(foreign_origins) * 4
        assert await snapshot(http) == before
        assert before[0]["onboarded"] is True

        # The same request from the daemon's own page and from NuNet's dashboard does run.
        own = f"http://127.0.0.1:{port}"
        for origin, available in ((DASHBOARD, False), (own, True)):
            headers = {"Origin": origin, "Content-Type": "application/json"}
            async with http.post(f"{API}/device/status", json={"is_available": available}, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert r.headers.get(ACAO) == (DASHBOARD if origin == DASHBOARD else None)
            async with http.get(f"{API}/device/status") as r:
                status = await r.json()
                assert status.get("online", status.get("is_available")) is available


async def test_get_is_readable_only_by_allowed_origins(node: Daemon) -> None:
    async with aiohttp.ClientSession(base_url=node.url) as http:
        path = f"{API}/onboarding/address/new?blockchain=ethereum"
        async with http.get(path, headers={"Origin": FOREIGN}) as r:
            assert r.status == 200  # it runs (GET changes nothing), but the browser may not show it to the page
            assert not [h for h in r.headers if h.lower().startswith("access-control-")]
        async with http.get(path, headers={"Origin": DASHBOARD}) as r:
            assert r.status == 200
            assert r.headers[ACAO] == DASHBOARD
            assert r.headers.get("Access-Control-Allow-Credentials") == "true"


@pytest.mark.parametrize("origin", [DASHBOARD, "http://localhost:9991"])
async def test_preflight_from_an_allowed_origin(node: Daemon, origin: str) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type, authorization"}  # fmt: skip
    async with aiohttp.ClientSession(base_url=node.url) as http:
        for path in ("/onboarding/onboard", "/device/status", "/run/request-service"):
            async with http.options(API + path, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert r.headers[ACAO] == origin
                assert "POST" in r.headers["Access-Control-Allow-Methods"]
                assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()


async def test_preflight_from_a_foreign_origin_is_refused(node: Daemon) -> None:
    async with aiohttp.ClientSession(base_url=node.url) as http:
        for origin in (FOREIGN, "null", "http://localhost:9993"):
            headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            async with http.options(f"{API}/onboarding/onboard", headers=headers) as r:
                assert r.status == 403
                assert ACAO not in r.headers


async def test_websocket_from_each_kind_of_origin(node: Daemon) -> None:
    port = int(node.url.rsplit(":", 1)[1])
    async with aiohttp.ClientSession() as http:
        for origin in (None, f"http://127.0.0.1:{port}", f"http://localhost:{port}", DASHBOARD):
            headers = {"Origin": origin} if origin else {}
            async with http.ws_connect(node.url + API + "/run/deploy", headers=headers) as ws:
                first = await ws.receive_json(timeout=10)
                assert first["action"] == "connected", origin
        for origin in (FOREIGN, "null", f"http://127.0.0.1:{port + 1}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(node.url + API + "/run/deploy", headers={"Origin": origin})
            assert err.value.status == 403, origin


async def test_host_must_name_the_daemon(node: Daemon) -> None:
    port = int(node.url.rsplit(":", 1)[1])
    async with aiohttp.ClientSession(base_url=node.url) as http:
        # A DNS-rebinding page: its own origin, its own Host, our address underneath.
        for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}", f"10.1.2.3:{port}"):
            headers = {"Host": host, "Origin": f"http://{host}"}
            async with http.get(f"{API}/onboarding/address/new?blockchain=ethereum", headers={"Host": host}) as r:
                assert r.status == 403, host
                assert error_code(await r.json()) == "host_not_allowed"
            async with http.post(f"{API}/device/status", json={"is_available": False}, headers=headers) as r:
                assert r.status == 403, host
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"dms.lan:{port}", "localhost."):
            async with http.get(f"{API}/onboarding/status", headers={"Host": host}) as r:
                assert r.status == 200, host
            headers = {"Host": host, "Origin": f"http://{host.rstrip('.')}"}
            if ":" in host:  # the page this daemon served under that name posts back to it
                async with http.post("/auth/logout", headers=headers) as r:
                    assert r.status == 200, (host, await r.text())
