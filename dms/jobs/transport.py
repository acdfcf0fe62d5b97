"""The narrow view the job services have of the peer-to-peer network (implemented by dms.network)."""

from __future__ import annotations

from typing import Protocol

from dms.network.errors import NetworkError, PeerUnreachable, StreamClosed

__all__ = ["Dialer", "LineStream", "NetworkError", "PeerUnreachable", "StreamClosed"]


class LineStream(Protocol):
    """A bidirectional stream of newline-terminated messages with one peer."""

    @property
    def remote_peer(self) -> str: ...

    async def send(self, line: bytes) -> None:
        """Write one line (ending in a newline), or several lines at once (each ending in one: the reader
        receives them one by one). Raises StreamClosed."""

    async def receive(self, wait_s: float) -> bytes:
        """The next line, without its newline, within `wait_s`. Raises TimeoutError, or StreamClosed at the end."""

    async def close(self) -> None:
        """Close our side; never raises."""


class Dialer(Protocol):
    async def open(self, peer_id: str, protocol: str) -> LineStream:
        """A new stream to `peer_id` speaking `protocol`. Raises NetworkError (PeerUnreachable, ...) saying why."""
