"""Builds the aiohttp application from the services the composition root hands over."""

from __future__ import annotations

from aiohttp import web

from dms.api import artifacts, deploy_ws, metrics, modules, nunet, onboarding, peers, run, wallet
from dms.api.boundary import boundary_middleware, install_boundary
from dms.api.context import CONTEXT, ApiContext
from dms.api.dashboard import add_dashboard, security_headers
from dms.api.errors import MAX_BODY, error_middleware
from dms.api.openapi import add_docs, build_spec

BASE = "/api/v1"
ENDPOINTS = [
    *onboarding.ENDPOINTS,
    *peers.ENDPOINTS,
    *run.ENDPOINTS,
    *wallet.ENDPOINTS,
    *nunet.ENDPOINTS,
    *modules.ENDPOINTS,
    *artifacts.ENDPOINTS,
]


def build_web_app(context: ApiContext) -> web.Application:
    middlewares = [boundary_middleware, security_headers, error_middleware]  # the boundary first: outermost
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
    app[CONTEXT] = context
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, BASE + ep.path, ep.handler)
    app.router.add_get(BASE + "/run/deploy", deploy_ws.deploy_ws)
    deploy_ws.install(app)
    app.router.add_get("/metrics", metrics.metrics)
    add_docs(app, build_spec(ENDPOINTS, BASE, context.version), BASE + "/openapi.json")
    add_dashboard(app)
    install_boundary(app, context.settings.rest, BASE)  # last: it puts CORS on every API route
    return app
