"""The browser boundary, as the outermost middleware: before any handler runs, a request must name the daemon
in its `Host` (DNS rebinding), come from the daemon's own page or an allowed origin if it could change state
(CSRF: a `text/plain` POST needs no preflight), and carry the API token when one is configured.

CORS headers and preflight answers come from aiohttp-cors, for the allowed origins only (`rest.allowed_origins`);
the daemon's own page is same-origin and needs none. The rules themselves are pure (`dms.origins`).

The token: `Authorization: Bearer <token>` for programs; the `dms_token` cookie (HttpOnly, SameSite=Strict)
that `POST /auth/login` gives the daemon's own page; and `?token=` on the websocket URL, since a browser
cannot set headers on a websocket.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiohttp_cors
from aiohttp import web

from dms.api.errors import error_response
from dms.config import Rest
from dms.origins import Boundary, bearer, changes_state

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_COOKIE = "dms_token"
LOGIN_PATH = "/auth/login"
LOGOUT_PATH = "/auth/logout"
BOUNDARY = web.AppKey("boundary", Boundary)
# What needs no token: the static page (it holds no data) and the login that hands out the cookie.
OPEN_PREFIXES = ("/web/", "/swagger")
STATUS_PATH = "/auth/status"
OPEN_PATHS = frozenset({"/", "/favicon.ico", LOGIN_PATH, LOGOUT_PATH, STATUS_PATH})


def _own_port(request: web.Request) -> int:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if sock:
        return int(sock[1])
    return request.url.port or 80


def presented_token(request: web.Request) -> str | None:
    token = bearer(request.headers.get("Authorization")) or request.cookies.get(TOKEN_COOKIE)
    if token is None and request.headers.get("Upgrade", "").lower() == "websocket":
        token = request.query.get("token")
    return token


def needs_token(request: web.Request) -> bool:
    path = request.path
    return request.method != "OPTIONS" and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


@web.middleware
async def boundary_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rules = request.app[BOUNDARY]
    host = request.headers.get("Host")
    if not rules.host_ok(host):
        return error_response(
            403, "host_not_allowed",
            f"Host {host!r} is not a name of this daemon (its address, localhost, or rest.hostnames)",
        )  # fmt: skip
    origin = request.headers.get("Origin")
    state_changing = changes_state(request.method, request.headers.get("Upgrade"))
    if origin is not None and state_changing and rules.origin_kind(origin, _own_port(request)) == "foreign":
        return error_response(
            403, "origin_not_allowed",
            f"origin {origin} may not change this node (allowed: the daemon's own page and rest.allowed_origins)",
        )  # fmt: skip
    if needs_token(request) and not rules.token_ok(presented_token(request)):
        response = error_response(
            401, "unauthorized",
            "this daemon needs its API token (rest.api_token): Authorization: Bearer <token>, "
            f"the {TOKEN_COOKIE} cookie from POST {LOGIN_PATH}, or ?token= on the websocket URL",
        )  # fmt: skip
        response.headers["WWW-Authenticate"] = 'Bearer realm="nunet-dms"'
        return response
    return await handler(request)


async def login(request: web.Request) -> web.Response:
    """Trade the token (JSON `{"token"}` or a form field) for an HttpOnly cookie the page's calls carry."""
    rules = request.app[BOUNDARY]
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        token = body.get("token") if isinstance(body, dict) else None
    else:
        token = (await request.post()).get("token")
    if not isinstance(token, str) or not token:
        return error_response(400, "invalid_request", "token: a non-empty string is required")
    if rules.token is None:
        return web.json_response({"token_required": False})
    if not rules.token_ok(token):
        return error_response(401, "unauthorized", "token: not this daemon's rest.api_token")
    response = web.json_response({"token_required": True})
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.json_response({"logged_out": True})
    response.del_cookie(TOKEN_COOKIE, path="/")
    return response


async def auth_status(request: web.Request) -> web.Response:
    """Whether a token is needed and whether this request carries it (the page asks before it loads data)."""
    rules = request.app[BOUNDARY]
    return web.json_response(
        {"token_required": rules.token is not None, "authorized": rules.token_ok(presented_token(request))}
    )


def install_boundary(app: web.Application, rest: Rest, api_prefix: str) -> None:
    """Call after every route is added: the middleware's rules, the login routes, and CORS on the API."""
    app[BOUNDARY] = Boundary.from_settings(rest.addr, rest.hostnames, rest.allowed_origins, rest.api_token)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post(LOGOUT_PATH, logout)
    app.router.add_get(STATUS_PATH, auth_status)
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=True, expose_headers="*", allow_headers=("Authorization", "Content-Type"), max_age=600
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in rest.allowed_origins})
    for route in list(app.router.routes()):
        resource = route.resource
        if resource is not None and resource.canonical.startswith(api_prefix) and route.method != "OPTIONS":
            cors.add(route)
