"""A client that knows only NuNet's DMS 0.4.143 shapes (shared/reference/nunet-dms-0.4.143-api.md), the way
NuNet's shell CLI and dashboards talk: JSON posted with curl's default form content type, success judged
by a null `.error`, frames read by their top-level keys.

Nothing here knows dms's own fields: a test written with it passes only if NuNet's clients would work.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


class NuNetClient:
    def __init__(self, http: aiohttp.ClientSession, base: str = "/api/v1") -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        url = path if path.startswith("/swagger") else self.base + path
        async with self.http.request(method, url, data=data, headers=FORM, params=params or None) as r:
            text = await r.text()
            return r.status, json.loads(text) if text else None

    async def ok(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        """NuNet's CLI's test of success: the answer has no non-null `.error`."""
        status, out = await self.call(method, path, body, **params)
        assert not (isinstance(out, dict) and out.get("error") is not None), (status, out)
        assert status < 400, (status, out)
        return out

    async def error(self, method: str, path: str, body: Any = None, **params: str) -> tuple[int, str]:
        """NuNet's CLI prints `.error`, a string."""
        status, out = await self.call(method, path, body, **params)
        assert status >= 400 and isinstance(out, dict), (status, out)
        assert isinstance(out["error"], str) and out["error"], out
        return status, out["error"]


def log_text(frames: list[dict[str, Any]], stream: str) -> str:
    """The log a NuNet dashboard shows: each log frame's top-level `stdout` or `stderr`, one per frame."""
    shown = []
    for f in frames:
        if f["action"] == "log-stream-response":
            assert isinstance(f.get("stdout", f.get("stderr")), str), f
            assert not ("stdout" in f and "stderr" in f), f
            shown.append(f.get(stream, ""))
    return "".join(shown)
