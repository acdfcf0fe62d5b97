"""Our wire protocols, each a short exchange on one stream with a deadline on every step.

- `/dms/capacity/1.0.0`: on every new connection each side opens a stream and writes its current
  signed capacity record as one line of JSON (`records.py`), then closes. The reader takes at most
  `MAX_RECORD_BYTES` and waits at most `timeout_s`, so a silent or flooding peer costs one bounded stream.
- `/ipfs/ping/1.0.0`: the standard libp2p ping (32 random bytes echoed back), served by `liveness.py`
  (it notes each ping as a sign of life); `ping` is the client side with our deadline and a float RTT.
"""

from __future__ import annotations

import secrets
import time

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as LIBP2P_PING_ID
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

CAPACITY_PROTOCOL = TProtocol("/dms/capacity/1.0.0")
PING_PROTOCOL = LIBP2P_PING_ID
PING_BYTES = 32


class StreamProblem(Exception):
    """The remote side broke the exchange: `reason` is one of oversize, timeout, empty, reset."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


async def read_line(stream: INetStream, limit: int, timeout_s: float) -> bytes:
    """Read one newline-terminated line (without the newline); the end of the stream also ends it.

    Raises StreamProblem when the line exceeds `limit` bytes, takes longer than `timeout_s`,
    is empty, or the stream is reset.
    """
    buf = b""
    with trio.move_on_after(timeout_s) as scope:
        while b"\n" not in buf and len(buf) <= limit:
            try:
                chunk = await stream.read(limit + 1 - len(buf))
            except StreamEOF:
                break
            except Exception as e:  # StreamReset and the muxer's other errors: the stream is unusable
                raise StreamProblem("reset", str(e) or type(e).__name__) from e
            if not chunk:
                break
            buf += chunk
    line, newline, _ = buf.partition(b"\n")
    if len(line) > limit:
        raise StreamProblem("oversize", f"more than {limit} bytes without a newline")
    if scope.cancelled_caught and not newline:
        raise StreamProblem("timeout", f"no complete line within {timeout_s:.1f} s")
    if not line.strip():
        raise StreamProblem("empty", "the stream ended without a line")
    return line


async def send_line(
    host: IHost, peer_id: ID, protocol: TProtocol, line: bytes, timeout_s: float, *, until_read: bool = False
) -> None:
    """Open a `protocol` stream to a connected peer, write `line` and a newline, close.

    `until_read`: then wait for the peer to close its side too (its handler closes once it has read the
    line), for a caller that closes the connection next: a close right behind the line can reach the
    peer before its handler has run, and the line is lost with the connection.
    Raises trio.TooSlowError after timeout_s, or libp2p's stream and negotiation errors.
    """
    with trio.fail_after(timeout_s):
        stream = await host.new_stream(peer_id, [protocol])
        try:
            await stream.write(line + b"\n")
        finally:
            await stream.close()
        if until_read:
            try:
                while await stream.read(64):
                    pass
            except StreamEOF:
                pass


async def ping(host: IHost, peer_id: ID, timeout_s: float) -> float:
    """One `/ipfs/ping/1.0.0` round trip to a connected (or dialable) peer, in seconds.

    Raises trio.TooSlowError after timeout_s, ValueError when the echo is wrong, or libp2p's errors.
    """
    with trio.fail_after(timeout_s):
        stream = await host.new_stream(peer_id, [PING_PROTOCOL])
        try:
            return await ping_on(stream)
        finally:
            await stream.close()


async def ping_on(stream: INetStream) -> float:
    """One round trip on an open `/ipfs/ping/1.0.0` stream (the protocol allows many on one stream), in
    seconds. No deadline of its own: the caller's. Raises ValueError when the echo is wrong or cut short,
    or libp2p's stream errors."""
    payload = secrets.token_bytes(PING_BYTES)
    started = time.perf_counter()
    await stream.write(payload)
    echo = await read_exactly(stream, PING_BYTES)
    rtt = time.perf_counter() - started
    if echo != payload:
        raise ValueError("the peer answered the ping with other bytes")
    return rtt


async def read_exactly(stream: INetStream, n: int) -> bytes | None:
    """`n` bytes (a read may return fewer); None when the stream ends first (cleanly or mid-way). No deadline
    of its own. Raises libp2p's stream errors (a reset)."""
    buf = b""
    while len(buf) < n:
        try:
            chunk = await stream.read(n - len(buf))
        except StreamEOF:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf
