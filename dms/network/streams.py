"""Line streams on our own protocols (e.g. `/dms/deployment/1.0.0`), usable from asyncio.

`TrioLines` wraps a libp2p stream on the trio side with a line buffer; `NetLineStream` is its asyncio
face (the `dms.jobs.transport.LineStream` protocol): every call crosses the bridge at most once. A read that
times out loses nothing: bytes are only taken out of the buffer once a whole line is there.

A read takes, with the line asked for, the whole lines already behind it in the buffer (up to `AHEAD`
bytes): a provider sends a job's events in few writes, and each line read alone was a crossing of its own.
What was taken ahead is handed out first, as lines or, to `receive_bytes`, as the same bytes.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamEOF

from dms.network import fastpath
from dms.network.errors import NetworkError, StreamClosed

if TYPE_CHECKING:
    from dms.network.bridge import TrioThread

MAX_LINE = 1024 * 1024
CHUNK = 64 * 1024
BULK_READ = 16 * 1024 * 1024
"""What `read_some` asks of the stream: more than yamux ever buffers (its largest window), so all of it."""
WRITE_TIMEOUT_S = 30.0
AHEAD = 64 * 1024
"""Bytes of whole lines a line read takes with it from the buffer (see the module's docstring)."""


class TrioLines:
    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._eof = False
        try:
            addr = stream.get_remote_address()
        except Exception:  # transports differ in what they know; unknown is an answer
            addr = None
        self.remote_host: str | None = addr[0] if addr else None
        """The IP address of the connection under the stream (None when the transport does not say)."""

    @property
    def remote_peer(self) -> str:
        return str(self._stream.muxed_conn.peer_id)

    async def read_line(self, wait_s: float) -> bytes:
        """The next line without its newline. Raises trio.TooSlowError, or StreamClosed at the end."""
        with trio.fail_after(wait_s):
            while b"\n" not in self._buf:
                if self._eof:
                    raise StreamClosed("the peer closed the stream")
                if len(self._buf) > MAX_LINE:
                    raise StreamClosed(f"the peer sent more than {MAX_LINE} bytes without a newline")
                try:
                    chunk = await self._stream.read(CHUNK)
                except StreamEOF:
                    chunk = b""
                except Exception as e:  # reset, or the connection under it dropped
                    raise StreamClosed(f"the stream broke: {e or type(e).__name__}") from e
                if not chunk:
                    self._eof = True
                self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return line

    async def read_lines(self, wait_s: float) -> tuple[bytes, bytes]:
        """`read_line`, and the whole lines behind it in the buffer, up to AHEAD bytes, each with its newline."""
        line = await self.read_line(wait_s)
        end = self._buf.rfind(b"\n", 0, AHEAD)
        if end < 0:
            return line, b""
        ahead = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        return line, ahead

    async def read_some(self, limit: int, wait_s: float) -> bytes:
        """Up to `limit` raw bytes (buffered ones first): waits up to `wait_s` for the first byte, then takes
        whatever else has already arrived without waiting for more; b"" at the end of the stream.

        Raises trio.TooSlowError when nothing at all arrived in time, StreamClosed when the stream broke.
        Each read takes everything yamux holds for the stream (taking part of its buffer would make
        yamux copy the rest on every frame that arrives after: fastpath.py).
        """
        parts = [bytes(self._buf)] if self._buf else []
        have = len(self._buf)
        self._buf = bytearray()
        with trio.move_on_after(wait_s) as scope:
            while have < limit and not self._eof:
                if have and not fastpath.buffered(self._stream):
                    break  # return what is there rather than wait for more
                try:
                    chunk = await self._stream.read(BULK_READ)
                except StreamEOF:
                    chunk = b""
                except Exception as e:
                    raise StreamClosed(f"the stream broke: {e or type(e).__name__}") from e
                if not chunk:
                    self._eof = True
                parts.append(chunk)
                have += len(chunk)
        if scope.cancelled_caught and not have:
            raise trio.TooSlowError
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if len(data) > limit:
            self._buf = bytearray(data[limit:])
            data = data[:limit]
        return data

    async def write(self, data: bytes) -> None:
        try:
            with trio.fail_after(WRITE_TIMEOUT_S):
                await self._stream.write(data)
        except Exception as e:
            raise StreamClosed(f"cannot write to the peer: {e or type(e).__name__}") from e

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.close()


class NetLineStream:
    """A line stream with one peer, driven from asyncio."""

    def __init__(self, thread: TrioThread, lines: TrioLines) -> None:
        self._thread = thread
        self._lines = lines
        self._remote = lines.remote_peer
        self._remote_host = lines.remote_host
        self._ahead = b""
        """Whole lines read ahead (each with its newline): what `receive` and `receive_bytes` hand out first."""

    @property
    def remote_peer(self) -> str:
        return self._remote

    @property
    def remote_host(self) -> str | None:
        return self._remote_host

    async def send(self, line: bytes) -> None:
        try:
            await self._thread.call(functools.partial(self._lines.write, line))
        except StreamClosed:
            raise
        except NetworkError as e:  # the p2p thread is stopping
            raise StreamClosed(str(e)) from e

    async def receive(self, wait_s: float) -> bytes:
        if self._ahead:
            line, _, self._ahead = self._ahead.partition(b"\n")
            return line
        try:
            line, self._ahead = await self._thread.call(functools.partial(self._lines.read_lines, wait_s))
            return line
        except trio.TooSlowError:
            raise TimeoutError(f"no message from {self._remote} within {wait_s:g} s") from None
        except StreamClosed:
            raise
        except NetworkError as e:  # the p2p thread is stopping
            raise StreamClosed(str(e)) from e

    async def receive_bytes(self, limit: int, wait_s: float) -> bytes:
        """Up to `limit` raw bytes (after the lines read so far); b"" at the end of the stream.

        Raises TimeoutError when nothing arrived within `wait_s`, StreamClosed when the stream broke.
        """
        if self._ahead:
            data, self._ahead = self._ahead[:limit], self._ahead[limit:]
            return data
        try:
            return await self._thread.call(functools.partial(self._lines.read_some, limit, wait_s))
        except trio.TooSlowError:
            raise TimeoutError(f"no bytes from {self._remote} within {wait_s:g} s") from None
        except StreamClosed:
            raise
        except NetworkError as e:
            raise StreamClosed(str(e)) from e

    async def close(self) -> None:
        with contextlib.suppress(NetworkError):
            await self._thread.call(self._lines.close)
