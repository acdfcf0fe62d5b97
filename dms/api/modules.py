"""Module registry endpoints: add (the module itself as the body), list, show, delete.

POST takes the raw module (WebAssembly binary, or WAT text) as the body, up to the store's own limit
(larger than the API's JSON body limit), with `name` and `description` in the query.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from dms.api.context import ctx
from dms.api.endpoint import Endpoint, Query, reply
from dms.api.errors import BadRequest
from dms.errors import Conflict
from dms.executor.modules import MAX_MODULE_BYTES, ModuleEntry, ModuleStore


class ModuleOut(BaseModel):
    name: str
    description: str
    sha256: str
    size: int
    imports: list[str]
    exports: list[str]
    added_at: str

    @classmethod
    def of(cls, e: ModuleEntry) -> ModuleOut:
        return cls(
            name=e.name, description=e.description, sha256=e.sha256, size=e.size, imports=list(e.imports),
            exports=list(e.exports), added_at=e.added_at,
        )  # fmt: skip


class ModulesOut(BaseModel):
    modules: list[ModuleOut]


def store(request: web.Request) -> ModuleStore:
    modules = ctx(request).modules
    if modules is None:
        raise Conflict("this node keeps no module registry", code="no_modules")
    return modules


async def read_module(request: web.Request) -> bytes:
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data.extend(chunk)
        if len(data) > MAX_MODULE_BYTES:
            raise BadRequest(f"module is over {MAX_MODULE_BYTES} bytes", code="too_large")
    if not data:
        raise BadRequest("request body is empty; the module (WebAssembly binary or WAT text) is expected")
    return bytes(data)


async def add(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise BadRequest("name: required (in the query)", [{"field": "name", "message": "required"}])
    description = request.query.get("description", "")
    entry = await store(request).add(name, description, await read_module(request))
    return reply(ModuleOut.of(entry), status=201)


async def list_modules(request: web.Request) -> web.Response:
    return reply(ModulesOut(modules=[ModuleOut.of(e) for e in await store(request).list()]))


async def show(request: web.Request) -> web.Response:
    return reply(ModuleOut.of(await store(request).get(request.match_info["ref"])))


async def delete(request: web.Request) -> web.Response:
    return reply(ModuleOut.of(await store(request).delete(request.match_info["ref"])))


ENDPOINTS = [
    Endpoint("POST", "/modules", add, "Add a WASM module (body: the binary or WAT text) to this node's registry",
             "modules", response=ModuleOut, ok_status=201,
             query=(Query("name", "The module's name.", required=True), Query("description", "What it does."))),
    Endpoint("GET", "/modules", list_modules, "The WASM modules in this node's registry", "modules",
             response=ModulesOut),
    Endpoint("GET", "/modules/{ref}", show, "One module, by name or sha256", "modules", response=ModuleOut),
    Endpoint("DELETE", "/modules/{ref}", delete, "Remove a module's entry (and its blob when nothing refers to it)",
             "modules", response=ModuleOut),
]  # fmt: skip
