"""`rest.api_token`: every REST and websocket call carries it (bearer header, the page's HttpOnly cookie, or
`?token=` on the websocket URL); off loopback the daemon does not start without one."""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from dms.app import Daemon
from dms.config import ConfigError, load_settings
from tests.boundary.conftest import TOKEN, error_code
from tests.netns import Lan, Node, entered
from tests.procs import DAEMON, write_config

API = "/api/v1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_every_api_call_needs_the_token(token_node: Daemon) -> None:
    async with aiohttp.ClientSession(base_url=token_node.url) as http:
        for path in (f"{API}/onboarding/status", f"{API}/peers/self", f"{API}/openapi.json", "/metrics"):
            async with http.get(path) as r:
                assert r.status == 401, path
                assert error_code(await r.json()) == "unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.get(path, headers={"Authorization": "Bearer wrong-token-of-some-length"}) as r:
                assert r.status == 401, path
            async with http.get(path, params={"token": TOKEN}) as r:
                assert r.status == 401, path  # a token in a REST URL would end up in logs and history
            async with http.get(path, headers=AUTH) as r:
                assert r.status == 200, path
        async with http.post(f"{API}/device/status", json={"is_available": False}) as r:
            assert r.status == 401
        async with http.get("/auth/status") as r:
            assert await r.json() == {"token_required": True, "authorized": False}
    # The open paths do not open anything else (raw requests: clients would normalise these paths away).
    port = int(token_node.url.rsplit(":", 1)[1])
    for path in ("/web/../api/v1/onboarding/status", "/web/%2e%2e/api/v1/onboarding/status",
                 "/swagger/../metrics", "//api/v1/onboarding/status", "/auth/status/../../metrics"):  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        status_line = (await reader.readline()).decode()
        writer.close()
        assert status_line.split()[1] in ("401", "404"), (path, status_line)


async def test_the_page_logs_in_with_an_httponly_cookie(token_node: Daemon) -> None:
    port = int(token_node.url.rsplit(":", 1)[1])
    own = {"Origin": f"http://127.0.0.1:{port}"}
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies from an IP address, as a browser does
    async with aiohttp.ClientSession(base_url=token_node.url, cookie_jar=jar) as http:
        async with http.post("/auth/login", json={"token": "not-the-token-at-all"}, headers=own) as r:
            assert r.status == 401
            assert "Set-Cookie" not in r.headers
        async with http.post("/auth/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403  # a foreign page cannot plant the cookie either
        async with http.post("/auth/login", data={"token": TOKEN}, headers=own) as r:
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        async with http.get(f"{API}/onboarding/status") as r:  # the session now carries the cookie
            assert r.status == 200
        async with http.get("/auth/status") as r:
            assert await r.json() == {"token_required": True, "authorized": True}
        async with http.ws_connect(f"{API}/run/deploy", headers=own) as ws:
            assert (await ws.receive_json(timeout=10))["action"] == "connected"
        async with http.post("/auth/logout", headers=own) as r:
            assert r.status == 200
        async with http.get(f"{API}/onboarding/status") as r:
            assert r.status == 401


async def test_the_websocket_takes_the_token_in_its_url(token_node: Daemon) -> None:
    url = token_node.url + API + "/run/deploy"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(url)
        assert err.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(url, params={"token": "wrong-token-of-some-length"})
        assert err.value.status == 401
        async with http.ws_connect(url, params={"token": TOKEN}) as ws:
            assert (await ws.receive_json(timeout=10))["action"] == "connected"
        async with http.ws_connect(url, headers=AUTH) as ws:
            assert (await ws.receive_json(timeout=10))["action"] == "connected"


def test_off_loopback_the_config_needs_a_token(tmp_path: Path) -> None:
    for addr in ("10.213.0.1", "0.0.0.0", "::", "192.168.1.5"):
        cfg = write_config(tmp_path / "c.json", tmp_path / "data", 9999, rest={"addr": addr})
        with pytest.raises(ConfigError, match=r"rest\.api_token"):
            load_settings(str(cfg))
    for addr in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        cfg = write_config(tmp_path / "c.json", tmp_path / "data", 9999, rest={"addr": addr})
        assert load_settings(str(cfg))[0].rest.api_token is None
    cfg = write_config(tmp_path / "c.json", tmp_path / "data", 9999, rest={"addr": "0.0.0.0", "api_token": "short"})
    with pytest.raises(ConfigError, match=r"rest\.api_token"):
        load_settings(str(cfg))


def test_the_daemon_refuses_to_start_off_loopback_without_a_token(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.json", tmp_path / "data", 9999, rest={"addr": "10.213.0.1"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_")}
    done = subprocess.run([*DAEMON, "--config", str(cfg)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "rest.api_token" in done.stderr and "10.213.0.1" in done.stderr


def _request(node: Node, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A request to the daemon on the node's own address, from inside its namespace."""
    conn = http.client.HTTPConnection(node.ip, 8080, timeout=10)
    with entered(node.ns):
        conn.connect()
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _upgrade() -> dict[str, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    return {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}


def test_on_a_non_loopback_address_only_token_holders_get_in(tmp_path: Path) -> None:
    with Lan(1) as lan:
        node = lan.nodes[0]
        cfg = write_config(
            tmp_path / "ns.json", tmp_path / "ns-data", 8080,
            rest={"addr": node.ip, "api_token": TOKEN},
            p2p={"listen_address": [f"/ip4/{node.ip}/tcp/9000"], "heartbeat_s": 1},
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_")}
        log = (tmp_path / "ns.log").open("ab")
        argv = ["ip", "netns", "exec", node.ns, *DAEMON, "--config", str(cfg)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "ns.log").read_text()
                try:
                    status, _ = _request(node, "GET", f"{API}/onboarding/status", {})
                    break
                except OSError:
                    assert time.monotonic() < deadline, (tmp_path / "ns.log").read_text()
                    time.sleep(0.1)
            assert status == 401
            assert _request(node, "GET", f"{API}/onboarding/status", AUTH)[0] == 200
            assert _request(node, "GET", f"{API}/run/deploy", _upgrade())[0] == 401
            assert _request(node, "GET", f"{API}/run/deploy?token={TOKEN}", _upgrade())[0] == 101
            # The page itself is static and open; everything it then calls is not.
            assert _request(node, "GET", "/auth/status", {})[0] == 200
        finally:
            proc.kill()
            proc.wait(timeout=10)


async def test_the_cli_sends_the_token(token_node: Daemon) -> None:
    from tests.procs import run_cli

    os.environ.pop("NUNET_DMS_TOKEN", None)
    refused = await asyncio.to_thread(run_cli, "capacity", dms=token_node.url)
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()
    os.environ["NUNET_DMS_TOKEN"] = TOKEN
    try:
        done = await asyncio.to_thread(run_cli, "capacity", dms=token_node.url)
    finally:
        del os.environ["NUNET_DMS_TOKEN"]
    assert done.returncode == 0, done.stdout + done.stderr
