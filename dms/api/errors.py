"""One error shape for every failure, NuNet's with dms's beside it: `{"error": "<message>", "code", "details"}`.

NuNet's clients read `.error` as a string (its CLI prints it; "no error" is a null or absent `.error`);
dms's own clients branch on the stable `code` and show `details` (the fields that were wrong).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dms.errors import Conflict, DmsError, InvalidInput, NotFound
from dms.network.errors import NetworkError, PeerUnreachable, UnknownPeer
from dms.store.health import storage_fault

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
DISK_FULL = 507  # Insufficient Storage


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return web.json_response({"error": message, "code": code, "details": details}, status=status)


@dataclass
class BadRequest(DmsError):
    """Input that cannot be read at all: not JSON, wrong types, unknown fields, bad query values."""

    code: str = "invalid_request"


# Most specific first: the first class that matches decides.
STATUS: dict[type[DmsError], int] = {
    BadRequest: 400,
    InvalidInput: 400,
    NotFound: 404,
    UnknownPeer: 404,
    Conflict: 409,
    PeerUnreachable: 504,
    NetworkError: 503,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DmsError as exc:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        return error_response(status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"request body too large (limit {MAX_BODY} bytes)"
        elif exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        return error_response(exc.status, HTTP_CODES.get(exc.status, "http_error"), message)
    except Exception as exc:
        fault = storage_fault(exc)
        if fault:
            log.error("%s %s: %s", request.method, request.path, fault)
            return error_response(DISK_FULL, "disk_full", f"{fault}; free some space and retry")
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the daemon's log has the details")
