"""Endpoints declared as data, so routing and the OpenAPI document come from one list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

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
    alt_body: type[BaseModel] | None = None
    """A second accepted body (NuNet's shape beside dms's), documented as oneOf."""
    alt_response: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    """Error statuses the route answers by design (e.g. 501 for a NuNet route dms does not offer), documented."""
    ok_status: int = 200
    """The status of a success (201 where the route stores something new)."""


class GoBody(BaseModel):
    """Base of a body on one of NuNet's routes, read as NuNet's server (Go's encoding/json) reads it:
    unknown keys are ignored, key names match without regard to case (`CPU` is `cpu`), and a JSON
    null leaves the field at its default. Types stay strict, as in Go (`"100"` is not a number).
    """

    model_config = ConfigDict(strict=True, extra="ignore")


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, whatever the Content-Type (NuNet never checks it: its CLI posts
    JSON with curl's default form type); a BadRequest says what is wrong with it."""
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    if not raw.strip():
        raise BadRequest("request body is empty; a JSON object is expected", code="invalid_json")
    try:
        data = boundedjson.loads(raw)
    except boundedjson.JSONRefused as exc:
        raise BadRequest(f"request body refused: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    return data


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Read and validate a JSON body; a BadRequest names the field for anything wrong.

    A GoBody model reads the body with Go's rules (see GoBody); any other model is strict.
    """
    data = await read_object(request)
    return validate(model, go_keys(model, data) if issubclass(model, GoBody) else data)


def go_keys(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Rename keys to the model's field names as Go matches them (exact name, else any case), drop the
    rest and the nulls; nested GoBody models are matched the same way."""
    fields = model.model_fields
    by_lower = {name.lower(): name for name in fields}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in fields else by_lower.get(key.lower())
        if name is None or value is None:
            continue
        inner = _go_model(fields[name].annotation)
        out[name] = go_keys(inner, value) if inner is not None and isinstance(value, dict) else value
    return out


def _go_model(annotation: Any) -> type[GoBody] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, GoBody):
            return candidate
    return None


def validate(model: type[M], data: dict[str, Any]) -> M:
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
