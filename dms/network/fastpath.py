"""Faster bulk bytes through py-libp2p 0.8.1's Noise and yamux: a version-checked patch, applied at host build.

Profiling one 32 MiB stream between two hosts (docs/artifacts.md, "Transfer speed") showed the cost in
Python bookkeeping, not in the cipher:

- Noise, reading: every Noise message costs two `read_exactly` calls on the socket (its 2-byte length,
  then its body), each a `receive_some` plus trio checkpoints, and a body of 64 KiB often arrives in
  several pieces. Here one read of up to `SOCKET_READ` bytes fills a buffer and the messages are cut out
  of it: one system call per several messages.
- Noise, writing: a write larger than one Noise message (65,519 bytes of plaintext) went out as one
  socket write per message. Here every message is encrypted first and the whole write goes out at once.
- yamux, writing: a 256 KiB write became four frames of 65,524 bytes, each frame a separate trip through
  the connection's write lock, a debug line formatted whether or not debug is on, and two Noise messages
  (a 65,536-byte frame does not fit in one). Here everything the send window allows goes out as one
  write of frames whose payload is `FRAME_PAYLOAD` (header + payload = exactly one Noise message).
- yamux, reading: `read_exactly` copied every frame body once more into a bytearray; here a read that
  returns the whole body at once is returned as it is. A frame body already decrypted and buffered is
  taken without arming a trio deadline (0.8.1 arms one per frame; only a wait needs it).
- yamux, crediting: 0.8.1 sends a WINDOW_UPDATE after most small reads whatever PY_YAMUX_RELEASE_ON_READ says
  (its "partial slack" rule): on an idle connection a third of the frames sent were window updates after
  32-byte pings. Here nothing is credited until `CREDIT_MIN` bytes have been consumed (the peer still has
  almost all its window); past that, 0.8.1's rules as they are (go-yamux's own rule, half the window, made
  bulk transfers slower: 0.8.1 also grows the window on each update).

Every replacement keeps the wire format (the same Noise messages, the same yamux frames, no larger than
before), the same exceptions and the same locking; peers that are not patched, in any language, see no
difference. Only the version the replacements were written against is patched: any other py-libp2p
version is left alone (slower, never wrong) and a warning says so.
"""

from __future__ import annotations

import importlib.metadata
import logging
import struct
from typing import Any

import trio
from libp2p.io.exceptions import IncompleteReadError
from libp2p.io.utils import read_exactly as _libp2p_read_exactly
from libp2p.security.noise import io as noise_io
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux

log = logging.getLogger(__name__)

PATCHED_VERSION = "0.8.1"
"""The py-libp2p version whose functions the replacements below are equivalent to."""
SOCKET_READ = 256 * 1024
"""Bytes asked of the connection per read on the Noise side."""
NOISE_PLAINTEXT = noise_io.MAX_PLAINTEXT_LENGTH  # 65,519
FRAME_PAYLOAD = NOISE_PLAINTEXT - yamux.HEADER_SIZE
"""yamux payload per frame: a frame then fills exactly one Noise message (go's default is 64 KiB)."""
WINDOW_POLL_S = 0.002
"""How often a writer with no send window left looks again (0.8.1 sleeps 10 ms, one round trip lost)."""
WINDOW_WAIT_S = 5.0
CREDIT_MIN = 16 * 1024
"""Consumed bytes below which a read sends no WINDOW_UPDATE (a 32-byte ping stream: one in about 500 pings)."""

_HEADER = struct.Struct(yamux.YAMUX_HEADER_FORMAT)
_applied: bool | None = None
_credit: Any = None
"""0.8.1's own YamuxStream._auto_tune_and_send_window_update, called by `_yamux_credit`."""


def installed_version() -> str:
    return importlib.metadata.version("libp2p")


def apply(version: str | None = None) -> bool:
    """Install the replacements once; True when they are in place.

    `version` defaults to the installed py-libp2p's; for any other than PATCHED_VERSION nothing is
    replaced (a warning names both versions) and False is returned.
    """
    global _applied
    if _applied is not None and version is None:
        return _applied
    found = version or installed_version()
    if found != PATCHED_VERSION:
        log.warning(
            "py-libp2p %s is installed; the transfer fast path was written for %s and is not applied "
            "(bulk transfers will be slower)",
            found,
            PATCHED_VERSION,
        )
        if version is None:
            _applied = False
        return False
    noise_io.NoiseTransportReadWriter.read_msg = _noise_read_msg  # type: ignore[method-assign]
    noise_io.NoiseTransportReadWriter.write_msg = _noise_write_msg  # type: ignore[method-assign]
    yamux.YamuxStream.write = _yamux_stream_write  # type: ignore[method-assign]
    yamux.Yamux._write_frame = _yamux_write_frame  # type: ignore[method-assign]
    setattr(yamux, "read_exactly", _read_exactly)  # noqa: B010  # the name yamux imported, not an attribute of ours
    yamux.Yamux._read_data_body = _yamux_read_data_body  # type: ignore[method-assign]
    global _credit
    if yamux.YamuxStream._auto_tune_and_send_window_update is not _yamux_credit:  # applied twice: keep 0.8.1's
        _credit = yamux.YamuxStream._auto_tune_and_send_window_update
    yamux.YamuxStream._auto_tune_and_send_window_update = _yamux_credit  # type: ignore[method-assign]
    _applied = True
    return True


def is_applied() -> bool:
    return bool(_applied)


# --- Noise (transport phase only: the handshake reader must not read past its own messages) ---


async def _noise_read_msg(self: Any, prefix_encoded: bool = False) -> bytes:
    """One decrypted Noise message, cut from a buffer filled by large reads."""
    buf: bytearray | None = getattr(self, "_dms_buf", None)
    if buf is None:
        buf = self._dms_buf = bytearray()
    conn = self.read_writer.read_write_closer
    await trio.lowlevel.checkpoint()  # one schedule point per message, as 0.8.1's socket read gave (see above)
    while True:
        if len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            end = 2 + size
            if len(buf) >= end:
                body = bytes(buf[2:end])
                del buf[:end]
                break
            want = max(SOCKET_READ, end - len(buf))
        else:
            want = SOCKET_READ
        chunk = await conn.read(want)
        if not chunk:
            expected = (2 + ((buf[0] << 8) | buf[1])) if len(buf) >= 2 else 2
            raise IncompleteReadError(
                f"Connection closed during read operation: expected {expected} bytes but received {len(buf)} bytes",
                expected_bytes=expected,
                received_bytes=len(buf),
            )
        buf += chunk
    if prefix_encoded:
        body = body[len(self.prefix) :]
    return bytes(self.decrypt(body))


async def _noise_write_msg(self: Any, msg: bytes, prefix_encoded: bool = False) -> None:
    """Encrypt `msg` as Noise messages of at most NOISE_PLAINTEXT bytes and write them in one go."""
    view = memoryview(msg)
    parts: list[bytes] = []
    for start in range(0, max(len(msg), 1), NOISE_PLAINTEXT):
        enc = self.encrypt(bytes(view[start : start + NOISE_PLAINTEXT]))
        if prefix_encoded and start == 0:
            enc = self.prefix + enc
        parts.append(len(enc).to_bytes(2, "big"))
        parts.append(enc)
    await self.read_writer.read_write_closer.write(b"".join(parts))


# --- yamux ---


async def _read_exactly(reader: Any, n: int, retry_count: int = 100) -> bytes:
    """libp2p's read_exactly without the extra copy when one read returns everything."""
    data = await reader.read(n)
    if len(data) == n:
        return bytes(data)
    rest = await _libp2p_read_exactly(reader, n - len(data), retry_count)
    return bytes(data) + rest


async def _yamux_read_data_body(self: Any, length: int) -> bytes:
    """A DATA frame's body: from the Noise session's buffer when all of it is there, else 0.8.1's way."""
    conn = self.secured_conn
    if isinstance(conn, SecureSession) and conn.high_watermark - conn.low_watermark >= length:
        return conn._drain(length)
    with trio.fail_after(yamux._yamux_data_read_timeout()):
        return await _read_exactly(conn, length)


async def _yamux_write_frame(self: Any, data: bytes) -> None:
    """Write frames to the connection, serialising writers (0.8.1's, less its per-frame debug line)."""
    async with self._write_lock:
        await self.secured_conn.write(data)
    await trio.lowlevel.checkpoint()


async def _yamux_stream_write(self: Any, data: bytes) -> None:
    """Send `data` as DATA frames: all the send window allows in one connection write."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    view = memoryview(data)
    total, sent = len(data), 0
    while sent < total:
        batch: bytes | None = None
        async with self.rw_lock.write_lock():
            if self.send_closed:
                raise MuxedStreamError("Stream is closed for sending")
            async with self.window_lock:
                if self.closed:
                    raise MuxedStreamError("Stream is closed")
                if self.send_window > 0:
                    n = min(self.send_window, total - sent)
                    self.send_window -= n
                    batch = _frames(self.stream_id, view[sent : sent + n])
        if batch is None:
            self._zero_window_waits += 1
            with trio.move_on_after(WINDOW_WAIT_S) as scope:
                while True:
                    async with self.window_lock:
                        if self.send_window > 0 or self.closed:
                            break
                    await trio.sleep(WINDOW_POLL_S)
            if scope.cancelled_caught:
                raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")
            continue
        await self.conn._write_frame(batch)
        sent += n


async def _yamux_credit(self: Any, *, bytes_read: int = 0) -> None:
    """After a read: no WINDOW_UPDATE for crumbs (less than CREDIT_MIN consumed since the last one; they are
    credited with a later read's), else 0.8.1's crediting and window growth."""
    buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
    consumed = self.target_recv_window - (self.recv_window + buffered)
    if consumed < CREDIT_MIN:
        return
    await _credit(self, bytes_read=bytes_read)


def _frames(stream_id: int, payload: memoryview) -> bytes:
    parts: list[bytes | memoryview] = []
    for start in range(0, len(payload), FRAME_PAYLOAD):
        piece = payload[start : start + FRAME_PAYLOAD]
        parts.append(_HEADER.pack(0, yamux.TYPE_DATA, 0, stream_id, len(piece)))
        parts.append(piece)
    return b"".join(parts)


def buffered(stream: Any) -> int:
    """Bytes that arrived on this libp2p stream and wait to be read (0 when not a yamux stream, or when the
    fast path is not applied: its yamux internals are only known for PATCHED_VERSION).

    Lets a reader take what is already there without waiting for more (yamux has no non-blocking read);
    0 only makes the reader return sooner.
    """
    muxed = getattr(stream, "muxed_stream", stream)
    if not _applied or not isinstance(muxed, yamux.YamuxStream):
        return 0
    return len(muxed.conn.stream_buffers.get(muxed.stream_id, b""))
