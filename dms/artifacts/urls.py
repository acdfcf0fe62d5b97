"""Fetching a job's input from an http(s) URL, with a size limit, a time limit, and address rules.

A job must not be able to make its provider probe the provider's own network: every address the URL's
host resolves to is checked, loopback, link-local, private (and unspecified, multicast, reserved)
ranges are refused unless the operator allows them (`artifacts.allow_addresses`), and the connection is
made to the checked address itself (a second DNS answer cannot swap it). Redirects are not followed.

The client is the standard library's `http.client`, run in a worker thread; the bytes go to a temp file
of the store, hashed while they stream, and enter the store only when complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dms.artifacts.errors import ArtifactTooLarge, TransferFailed
from dms.artifacts.store import Artifact, ArtifactStore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
READ = 256 * 1024


@dataclass(frozen=True)
class UrlLimits:
    max_bytes: int
    timeout_s: float
    allow: tuple[Network, ...] = ()

    @classmethod
    def of(cls, max_bytes: int, timeout_s: float, allow: Sequence[str]) -> UrlLimits:
        return cls(max_bytes, timeout_s, tuple(ipaddress.ip_network(a, strict=False) for a in allow))


def address_refusal(ip: IPAddress, allow: Sequence[Network]) -> str | None:
    """Why a URL may not reach `ip` (None: it may). Pure."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return None
    for what, hit in (
        ("loopback", ip.is_loopback), ("link-local", ip.is_link_local), ("private", ip.is_private),
        ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast), ("reserved", ip.is_reserved),
    ):  # fmt: skip
        if hit:
            return f"{ip} is a {what} address, which this provider's operator does not allow"
    return None


def check_url(url: str) -> str | None:
    """Why `url` is not a fetchable http(s) URL (None: it is). Pure."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are fetched"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username or parts.password:
        return "credentials in the URL are not accepted"
    return None


async def fetch_url(store: ArtifactStore, url: str, limits: UrlLimits) -> Artifact:
    """Download `url` into the store. Raises TransferFailed (with the reason), ArtifactTooLarge."""
    problem = check_url(url)
    if problem:
        raise TransferFailed(f"{url}: {problem}")
    tmp = store.new_temp()
    try:
        sha, size = await asyncio.wait_for(asyncio.to_thread(_download, url, limits, tmp), limits.timeout_s + 1)
        return await store.adopt(tmp, sha, size)
    except TimeoutError:
        raise TransferFailed(f"{url}: not complete within {limits.timeout_s:g} s") from None
    finally:
        store.discard(tmp)


def _download(url: str, limits: UrlLimits, dest: Path) -> tuple[str, int]:
    deadline = time.monotonic() + limits.timeout_s
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TransferFailed(f"{url}: cannot resolve {host}: {exc}") from exc
    addrs = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
    for ip in addrs:
        refusal = address_refusal(ip, limits.allow)
        if refusal:
            raise TransferFailed(f"{url}: {refusal}")
    conn = _connection(parts.scheme, host, str(addrs[0]), port, min(30.0, limits.timeout_s))
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers={"Host": parts.netloc, "User-Agent": "nunet-dms"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise TransferFailed(f"{url}: the server answered {resp.status} {resp.reason} (redirects are not followed)")
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > limits.max_bytes:
            raise ArtifactTooLarge(f"{url}: {length} bytes, over the input limit of {limits.max_bytes}")
        digest, size = hashlib.sha256(), 0
        with dest.open("wb") as f:
            while block := resp.read1(READ):
                size += len(block)
                if size > limits.max_bytes:
                    raise ArtifactTooLarge(f"{url}: more than the input limit of {limits.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise TransferFailed(f"{url}: not complete within {limits.timeout_s:g} s")
                digest.update(block)
                f.write(block)
        return digest.hexdigest(), size
    except OSError as exc:
        raise TransferFailed(f"{url}: {exc}") from exc
    finally:
        conn.close()


def _connection(scheme: str, host: str, ip: str, port: int, timeout: float) -> http.client.HTTPConnection:
    """A connection to the checked address `ip`, speaking to `host` (TLS names and checks `host`)."""

    class Pinned(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.create_connection((ip, port), timeout)

    class PinnedTLS(http.client.HTTPSConnection):
        def connect(self) -> None:
            raw = socket.create_connection((ip, port), timeout)
            self.sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host)

    if scheme == "https":
        return PinnedTLS(host, port, timeout=timeout)
    return Pinned(host, port, timeout=timeout)
