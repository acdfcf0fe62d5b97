"""OpenAPI 3 document generated from the endpoint list and its pydantic models; Swagger UI served locally."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from dms.api.endpoint import Endpoint, GoBody

REF = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"\{(\w+)\}")
GO_RULES = (
    "On NuNet's routes the body is read as NuNet's server (Go's encoding/json) reads it: unknown keys are "
    "ignored, key names match without regard to case, a null leaves the default, and the Content-Type is "
    "not checked (NuNet's CLI posts JSON as a form); types stay strict."
)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "NuNet's error (`error`, a string) with dms's stable `code` and `details` beside it.",
    "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "details": {}},
}


def _schema(model: type[BaseModel], mode: str, components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=REF, mode="validation" if mode == "in" else "serialization")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def build_spec(endpoints: Sequence[Endpoint], base: str, version: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    error_ref = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }
    for ep in endpoints:
        op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag], "responses": {"default": error_ref}}
        ok: dict[str, Any] = {"description": "OK"}
        if ep.response is not None:
            out: dict[str, Any] = _schema(ep.response, "out", components)
            if ep.alt_response is not None:
                out = {"oneOf": [out, _schema(ep.alt_response, "out", components)]}
            ok["content"] = {"application/json": {"schema": out}}
        op["responses"][str(ep.ok_status)] = ok
        for status in ep.errors:
            op["responses"][str(status)] = error_ref
        bodies = [b for b in (ep.body, ep.alt_body) if b is not None]
        if bodies:
            schemas = [_schema(b, "in", components) for b in bodies]
            body: dict[str, Any] = {
                "required": True,
                "content": {"application/json": {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}},
            }
            if any(issubclass(b, GoBody) for b in bodies):
                body["description"] = GO_RULES
            op["requestBody"] = body
        # OpenAPI requires every templated path segment to be declared as a required path parameter.
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in PATH_PARAM.findall(ep.path)
        ]
        parameters += [
            {
                "name": q.name,
                "in": "query",
                "required": q.required,
                "description": q.description,
                "schema": {"type": q.type},
            }
            for q in ep.query
        ]
        if parameters:
            op["parameters"] = parameters
        paths.setdefault(base + ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "nunet-dms", "version": version, "description": "Device Management Service REST API"},
        "paths": paths,
        "components": {"schemas": components},
    }


SWAGGER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>nunet-dms API</title>
<link rel="stylesheet" href="/swagger/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/swagger/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "%s", dom_id: "#ui"});</script>
</body></html>
"""


def add_docs(app: web.Application, spec: dict[str, Any], spec_path: str) -> None:
    """Serve the spec and Swagger UI from the assets installed with swagger-ui-bundle (no CDN)."""
    from swagger_ui_bundle import swagger_ui_path

    async def openapi_json(_: web.Request) -> web.Response:
        return web.json_response(spec)

    async def swagger(_: web.Request) -> web.Response:
        return web.Response(text=SWAGGER_HTML % spec_path, content_type="text/html")

    app.router.add_get(spec_path, openapi_json)
    app.router.add_get("/swagger/doc.json", openapi_json)  # where NuNet's CLI reads `.info.version`
    app.router.add_get("/swagger", swagger)
    app.router.add_static("/swagger/static", str(swagger_ui_path))
