"""A small synchronous client for the daemon's REST API, on urllib: the CLI starts fast and needs no loop."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

API = "/api/v1"


class ApiError(Exception):
    """The daemon answered with an error (`{"error": "<message>", "code", "details"}`)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class DaemonUnreachable(Exception):
    """No answer from the daemon: nothing listens at the URL, the name does not resolve, or it timed out."""


class DmsClient:
    """`get`/`post` return the parsed JSON body; errors raise ApiError or DaemonUnreachable.

    `source` says how the URL was chosen ("from --dms", "from rest.addr/rest.port in FILE"), so an
    unreachable daemon can be reported in terms the user can act on.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, source: str = "", token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.source = source
        self.token = token

    def get(self, path: str, **query: str) -> Any:
        return self._call("GET", path, query, None)

    def post(self, path: str, body: dict[str, Any] | None = None, **query: str) -> Any:
        return self._call("POST", path, query, body)

    def delete(self, path: str, **query: str) -> Any:
        return self._call("DELETE", path, query, None)

    def upload(self, path: str, data: bytes, content_type: str, **query: str) -> Any:
        """POST `data` as the raw body (a module, say) rather than JSON."""
        return self._call("POST", path, query, None, (data, content_type))

    def download(self, path: str, dest: Path) -> None:
        """Stream a GET answer's body into `dest`. Raises ApiError or DaemonUnreachable like `get`."""
        url = self.base_url + API + path
        request = urllib.request.Request(url, headers={"Accept": "*/*", **self._auth()})
        with (
            self._answers(url),
            urllib.request.urlopen(request, timeout=self.timeout) as response,
            dest.open("wb") as f,
        ):
            shutil.copyfileobj(response, f, 1024 * 1024)

    def upload_file(self, path: str, src: Path) -> Any:
        """POST a file's bytes as the body, streamed; the parsed JSON answer. Errors as `get`."""
        url = self.base_url + API + path
        with src.open("rb") as f:
            request = urllib.request.Request(
                url, data=f, method="POST",
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(src.stat().st_size),
                         "Accept": "application/json", **self._auth()},
            )  # fmt: skip
            with self._answers(url), urllib.request.urlopen(request, timeout=max(self.timeout, 600)) as response:
                return json.load(response)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: dict[str, Any] | None,
        raw: tuple[bytes, str] | None = None,
    ) -> Any:
        url = self.base_url + API + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", **self._auth()}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if raw is not None:
            data, headers["Content-Type"] = raw
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        with self._answers(url), urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.load(response)

    @contextlib.contextmanager
    def _answers(self, url: str) -> Iterator[None]:
        """Turn what urllib raises into ApiError (the daemon refused, or something else answered) or
        DaemonUnreachable (no answer), for every call."""
        try:
            yield
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise self._unreachable(getattr(reason, "strerror", None) or str(reason)) from None
        except TimeoutError:
            raise self._unreachable(f"no answer within {self.timeout:g} s") from None
        except ConnectionError as exc:
            raise self._unreachable(exc.strerror or type(exc).__name__) from None
        except (http.client.HTTPException, ValueError) as exc:
            # Not an HTTP answer, or not JSON: something other than nunet-dms listens there.
            raise ApiError(0, "bad_response", f"{url} did not answer as nunet-dms does ({exc})") from None

    def _unreachable(self, why: str) -> DaemonUnreachable:
        origin = f" ({self.source})" if self.source else ""
        return DaemonUnreachable(
            f"cannot reach nunet-dms at {self.base_url}{origin}: {why}.\n"
            "Is the daemon running? Start it with `nunet-dms` (or `sudo systemctl start nunet-dms`), "
            "or point the CLI at it with --dms URL or --config FILE."
        )


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    """Read the daemon's error shape; anything else (a proxy's page, say) becomes a generic error."""
    try:
        payload = json.loads(exc.read())
        message = payload["error"]
        if not isinstance(message, str):
            raise TypeError("not dms's error shape")
        return ApiError(exc.code, str(payload.get("code", "error")), message, payload.get("details"))
    except (ValueError, KeyError, TypeError, OSError):
        return ApiError(exc.code, "http_error", f"HTTP {exc.code} {exc.reason} from {exc.url}")
