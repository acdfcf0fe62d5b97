"""Endpoints declared as data, so routing and the OpenAPI document come from one list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from dms import boundedjson
from dms.api.errors import BadRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """Base of every request body: strict types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    type: str = "string"
    required: bool = False


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: tuple[Query, ...] = ()


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Read and validate a JSON body; a BadRequest names the field for anything wrong."""
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    if not raw.strip():
        raise BadRequest("request body is empty; a JSON object is expected", code="invalid_json")
    try:
        data = boundedjson.loads(raw)
    except boundedjson.JSONRefused as exc:
        raise BadRequest(f"request body refused: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [{"field": _loc(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise BadRequest(summary, details) from exc


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(body)"


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = raw.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}: expected true or false, got {raw!r}", [{"field": name, "message": "not a boolean"}])


def reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def reply_json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
