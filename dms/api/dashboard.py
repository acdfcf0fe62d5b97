"""The dashboard: static files from the package (`dms/web/`), served at `/` and `/web/`. It holds no data:
the page talks to the public REST API and the websocket like any other client (and through the same
browser boundary). Its libraries are vendored at build time (maint-scripts/build-web.sh), never a CDN."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
VENDORED = ("preact.module.js", "hooks.module.js", "htm.module.js", "uPlot.esm.js", "uPlot.min.css")
# Only this daemon's own scripts, styles and connections; no framing by other sites.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def missing_files(web_dir: Path = WEB_DIR) -> list[str]:
    """The vendored files that are not there (the bundle was not built)."""
    return [name for name in VENDORED if not (web_dir / "vendor" / name).is_file()]


async def index(request: web.Request) -> web.StreamResponse:
    missing = missing_files()
    if missing:
        return web.Response(
            status=503,
            text="The dashboard's libraries are not built (missing: "
            + ", ".join(missing)
            + "). Run maint-scripts/build-web.sh; the REST API works meanwhile (/swagger).\n",
        )
    return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path == "/" or request.path.startswith("/web/"):
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def add_dashboard(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/web", WEB_DIR, follow_symlinks=False, append_version=False)
