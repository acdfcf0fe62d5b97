"""The module registry over REST, against a real daemon: add, list, show, refuse, delete."""

from __future__ import annotations

from typing import Any

import aiohttp

from dms.app import Daemon
from tests import wasm_modules as m

API = "/api/v1/modules"


async def add(http: aiohttp.ClientSession, name: str, body: bytes, **query: str) -> tuple[int, dict[str, Any]]:
    async with http.post(API, params={"name": name, **query}, data=body) as r:
        return r.status, await r.json()


async def test_add_list_show_delete(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    binary = m.wasm(m.PRINTER)
    status, entry = await add(http, "printer", binary, description="prints its args")
    assert status == 201, entry
    assert entry["size"] == len(binary) and entry["description"] == "prints its args"
    assert "wasi_snapshot_preview1.fd_write" in entry["imports"]
    assert sorted(entry["exports"]) == ["_start", "memory"]
    # WAT text is accepted too, and the same module under another name shares its blob.
    status, same = await add(http, "printer-text", m.PRINTER.encode())
    assert status == 201 and same["sha256"] == entry["sha256"]

    async with http.get(API) as r:
        assert [x["name"] for x in (await r.json())["modules"]] == ["printer", "printer-text"]
    async with http.get(f"{API}/{entry['sha256']}") as r:
        assert (await r.json())["name"] in ("printer", "printer-text")

    blob = daemon.settings.general.data_dir / "modules" / f"{entry['sha256']}.wasm"
    async with http.delete(f"{API}/printer") as r:
        assert r.status == 200
    assert blob.is_file(), "another entry still refers to the blob"
    async with http.delete(f"{API}/printer-text") as r:
        assert r.status == 200
    assert not blob.exists()
    async with http.get(f"{API}/printer") as r:
        assert r.status == 404 and (await r.json())["code"] == "no_module"


async def test_bad_modules_are_refused_and_change_nothing(http: aiohttp.ClientSession) -> None:
    status, err = await add(http, "net", m.wasm(m.SOCKETS))
    assert status == 400
    assert "env.connect" in err["error"] and "WASI preview 1 only" in err["error"]
    status, err = await add(http, "junk", b"\x00asm\x01\x00\x00\x00\xff")
    assert status == 400 and "not a valid WebAssembly module" in err["error"]
    status, err = await add(http, "text", b"hello")
    assert status == 400 and "not a WebAssembly module" in err["error"]
    status, err = await add(http, "bad name!", m.wasm(m.PRINTER))
    assert status == 400 and err["details"][0]["field"] == "name"
    async with http.post(API, data=m.wasm(m.PRINTER)) as r:
        assert r.status == 400
    assert (await add(http, "p", m.wasm(m.PRINTER)))[0] == 201
    status, err = await add(http, "p", m.wasm(m.WRITER))
    assert status == 409 and err["code"] == "module_exists"
    async with http.get(API) as r:
        assert [x["name"] for x in (await r.json())["modules"]] == ["p"]


async def test_a_module_larger_than_the_json_limit_is_accepted(http: aiohttp.ClientSession) -> None:
    big = m.program("", f'(data (i32.const 0) "{"x" * (2 * 2**20)}")', pages=40)
    status, entry = await add(http, "big", m.wasm(big))
    assert status == 201 and entry["size"] > 2 * 2**20
