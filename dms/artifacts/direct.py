"""The direct path of `/dms/artifacts/1.0.0`: an artifact's bytes over a one-off TCP connection, encrypted.

Why: py-libp2p's Noise and yamux run in Python on one trio thread; even with `dms.network.fastpath` an
artifact moved at about a tenth of a plain TCP copy (docs/artifacts.md, "Transfer speed"). The libp2p
stream still carries the request and the offer; only the bytes take this path.

How, and what keeps it as safe as the libp2p stream:
- The holder opens a listener on an ephemeral port of its libp2p listen host, makes a fresh 256-bit key
  and a 128-bit token, and sends `{port, key, token}` on the libp2p stream: Noise-encrypted, to a peer
  that passed the handshake, the PSK and the allow-list. No one else learns them.
- The asker dials the IP its libp2p connection to that peer goes to (never an address the peer names;
  only the port comes from the offer) and sends the token. The listener takes the first connection
  whose first bytes are the token, within ACCEPT_TIMEOUT_S; any other is closed without a byte sent.
  Then it closes: one transfer, one connection.
- The bytes go as frames `[4-byte length][AES-256-GCM ciphertext and tag]` of at most FRAME bytes of
  plaintext; frame i uses nonce i (a key is never used twice), so a changed, dropped, reordered or
  replayed frame fails its tag. The artifact's sha256 is still checked over the whole file.
Blocking socket code: the two ends run in worker threads (hashing, AES-GCM, file writes and socket calls
release the GIL), and `close()` from the event loop ends a transfer at once. The sender seals frames
straight from a map of the file; the receiver decrypts each frame in place in one of RING buffers (page-aligned,
so an `Appender` writes them past the page cache), and two more threads write and hash it while the next frames
arrive (docs/artifacts.md, "The direct path").
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hmac
import mmap
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FRAME = 1024 * 1024
"""Plaintext bytes per frame."""
RING = 4
"""Frame buffers on the receiving end: the write and the hash may lag this many frames behind the receive."""
WINDOW = 4 * FRAME
"""Bytes of the file the sender maps at a time (populated before the first of its frames is sealed: small
enough that the first frame is not kept waiting)."""
SOCKET_BUFFER = 4 * 1024 * 1024
"""Asked of the kernel for each end's socket buffer (Linux doubles it, within twice net.core.rmem_max and
wmem_max). Large from the first byte: with the defaults a new connection's first MiB came in 64-128 KiB pieces
while the window grew, each piece a wake-up of both ends. Fixed, not grown by the kernel: 8 MiB holds a
1 Gb/s path of up to 60 ms round trip."""
TAG = 16
KEY_BYTES = 32
TOKEN_BYTES = 16
ACCEPT_TIMEOUT_S = 5.0
"""How long the holder waits for the asker's connection (with the token) before it gives up."""
TOKEN_TIMEOUT_S = 2.0
"""How long a connection may take to send the token."""
CONNECT_TIMEOUT_S = 3.0


class DirectFailed(Exception):
    """The direct transfer stopped; `got` bytes (verified frames) were written before it did. `forged`: a
    frame failed its tag (someone with the key sent other bytes, or the bytes were changed on the way)."""

    def __init__(self, message: str, got: int = 0, *, forged: bool = False) -> None:
        super().__init__(message)
        self.got = got
        self.forged = forged


@dataclass(frozen=True)
class Offer:
    port: int
    key: bytes
    token: bytes

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "key": self.key.hex(), "token": self.token.hex()}

    @classmethod
    def from_json(cls, data: object) -> Offer:
        """Raises ValueError naming what is wrong with a peer's offer."""
        if not isinstance(data, dict):
            raise ValueError("the direct offer is not an object")
        port, key, token = data.get("port"), data.get("key"), data.get("token")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError(f"bad port {port!r} in the direct offer")
        try:
            key_b = bytes.fromhex(str(key))
            token_b = bytes.fromhex(str(token))
        except ValueError:
            raise ValueError("key or token in the direct offer is not hex") from None
        if len(key_b) != KEY_BYTES or len(token_b) != TOKEN_BYTES:
            raise ValueError("key or token in the direct offer has the wrong length")
        return cls(port, key_b, token_b)


def listen_host(listen_address: str) -> str:
    """The host part of a libp2p listen address (`/ip4/0.0.0.0/tcp/9000` -> `0.0.0.0`): where direct
    listeners open, so they are reachable exactly where libp2p is. Raises ValueError on another shape."""
    parts = listen_address.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6") or not parts[2]:
        raise ValueError(f"{listen_address!r} is not an /ip4 or /ip6 address")
    return parts[2]


def _aes(key: bytes) -> AESGCM:
    """AES-256-GCM under `key`. cryptography is imported on the first transfer, not with the daemon (10 ms)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _nonce(i: int) -> bytes:
    return i.to_bytes(12, "big")


def _windows(f: BinaryIO, offset: int, size: int) -> Iterator[memoryview]:
    """Bytes [offset, size) of the open file `f` as read-only views of maps of up to WINDOW bytes, each
    populated at once (no page fault per 4 KiB page). Each view is released before the next is made.
    Blobs are never truncated in place (they are replaced whole), so a map never loses its pages."""
    at, size = offset, min(size, os.fstat(f.fileno()).st_size)
    while at < size:
        base = at - at % mmap.ALLOCATIONGRANULARITY
        length = min(size, base + WINDOW) - base
        flags = mmap.MAP_SHARED | mmap.MAP_POPULATE
        with (
            mmap.mmap(f.fileno(), length, flags=flags, prot=mmap.PROT_READ, offset=base) as mapped,
            memoryview(mapped) as whole,
            whole[at - base :] as view,
        ):
            yield view
        at = base + length


def _recv_exactly(sock: socket.socket, view: memoryview) -> bool:
    """Fill `view`; False on a clean end before its first byte. Raises DirectFailed on an end inside it."""
    filled = 0
    while filled < len(view):
        n = sock.recv_into(view[filled:])
        if n == 0:
            if filled == 0:
                return False
            raise DirectFailed("the connection ended inside a frame")
        filled += n
    return True


class Sender:
    """The holder's end: one listener, one accepted connection, the file's bytes from an offset."""

    def __init__(self, host: str) -> None:
        """Raises OSError when no listener can be opened on `host`."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family, backlog=4)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)  # accepted sockets inherit it
        self._conn: socket.socket | None = None
        self.offer = Offer(self._listener.getsockname()[1], os.urandom(KEY_BYTES), os.urandom(TOKEN_BYTES))
        self.strangers = 0
        """Connections refused for a wrong or missing token."""

    def send(self, path: Path, offset: int, size: int, stall_s: float) -> int:
        """Blocking: wait for the asker, then send bytes [offset, size) of `path`. Returns the bytes sent.

        Raises TimeoutError when no connection brought the token in time, OSError when the connection broke.
        """
        conn = self._accept()
        conn.settimeout(stall_s)
        aes = _aes(self.offer.key)
        frame = memoryview(bytearray(4 + FRAME + TAG))  # reused: no allocation per frame
        sent, i = 0, 0
        with path.open("rb") as f:
            for window in _windows(f, offset, size):
                # AES-GCM reads the page cache through the map and seals into the frame, and one send takes
                # the frame: the file's bytes are copied once on the way, not read into a buffer first.
                for at in range(0, len(window), FRAME):
                    n = min(FRAME, len(window) - at)
                    frame[:4] = (n + TAG).to_bytes(4, "big")
                    with window[at : at + n] as plain:
                        aes.encrypt_into(_nonce(i), plain, None, frame[4 : 4 + n + TAG])
                    conn.sendall(frame[: 4 + n + TAG])
                    i += 1
                    sent += n
        conn.shutdown(socket.SHUT_WR)
        return sent

    def _accept(self) -> socket.socket:
        deadline = time.monotonic() + ACCEPT_TIMEOUT_S
        token = bytearray(TOKEN_BYTES)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no direct connection with the token within {ACCEPT_TIMEOUT_S:g} s")
            self._listener.settimeout(left)
            conn, _ = self._listener.accept()
            conn.settimeout(min(TOKEN_TIMEOUT_S, max(left, 0.1)))
            try:
                ok = _recv_exactly(conn, memoryview(token)) and hmac.compare_digest(bytes(token), self.offer.token)
            except (OSError, DirectFailed):
                ok = False
            if ok:
                self._listener.close()
                self._conn = conn
                return conn
            self.strangers += 1
            conn.close()

    def close(self) -> None:
        """Stop at once (from any thread): the blocked `send` raises OSError."""
        _close(self._listener)
        if self._conn is not None:
            _close(self._conn)


class Sink(Protocol):
    """Where received plaintext goes: a file, or `dms.artifacts.appender.Appender`."""

    def write(self, data: memoryview, /) -> object: ...


class Receiver:
    """The asker's end: dial, present the token, append verified plaintext to a file and a digest."""

    def __init__(self, host: str, offer: Offer) -> None:
        self._host = host
        self._offer = offer
        self._sock: socket.socket | None = None
        self._closed = False

    def receive(self, out: Sink, digest: Any, want: int, stall_s: float) -> int:
        """Blocking: up to `want` bytes, each frame written to `out` and fed to `digest` once its tag checks.
        Returns the bytes received (fewer when the holder ended early). Raises DirectFailed (with the bytes
        kept so far) when the connection cannot be made, breaks, stalls, or a frame fails its tag."""
        got = 0
        pools: list[concurrent.futures.ThreadPoolExecutor] = []
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
            self._sock = sock
            if self._closed:
                raise DirectFailed("closed")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)  # before the connect: the first window
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect((self._host, self._offer.port))
            sock.settimeout(stall_s)
            sock.sendall(self._offer.token)
            from cryptography.exceptions import InvalidTag  # late, as in _aes

            aes = _aes(self._offer.key)
            head = memoryview(bytearray(4))
            # RING frame buffers, used in turn: frame i arrives in one and is decrypted in place by this thread,
            # then written to `out` by a second thread and hashed by a third (file writes and hashlib release
            # the GIL) while frames i + 1 ... arrive; a buffer is reused only once both are done. Each thread
            # keeps its order, so the file and the digest see the frames in order.
            ring = [memoryview(mmap.mmap(-1, FRAME + TAG)) for _ in range(RING)]  # page-aligned (O_DIRECT)
            busy: list[tuple[concurrent.futures.Future[Any], ...]] = [()] * RING
            writing = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dms-direct-write")
            pools.append(writing)
            hashing = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dms-direct-hash")
            pools.append(hashing)
            i = 0
            while got < want:
                if not _recv_exactly(sock, head):
                    break
                length = int.from_bytes(head, "big")
                if not TAG <= length <= FRAME + TAG:
                    raise DirectFailed(f"a frame of {length} bytes is out of bounds", got)
                slot = i % RING
                for done in busy[slot]:
                    done.result()
                sealed = ring[slot][:length]
                if not _recv_exactly(sock, sealed):
                    raise DirectFailed(f"the holder ended inside frame {i}", got)
                plain = sealed[: length - TAG]
                try:
                    aes.decrypt_into(_nonce(i), sealed, None, plain)  # in place: OpenSSL's GCM allows it
                except InvalidTag:
                    raise DirectFailed(f"frame {i} failed its authentication tag", got, forged=True) from None
                if got + len(plain) > want:
                    raise DirectFailed("the holder sent more bytes than announced", got)
                busy[slot] = (writing.submit(out.write, plain), hashing.submit(digest.update, plain))
                got += len(plain)
                i += 1
            for frame in busy:
                for done in frame:
                    done.result()
            return got
        except DirectFailed as exc:
            exc.got = max(exc.got, got)
            raise
        except OSError as exc:  # refused, unreachable, reset, or the stall timeout
            raise DirectFailed(f"direct connection: {exc or type(exc).__name__}", got) from exc
        finally:
            if self._sock is not None:
                self._sock.close()
            for pool in pools:
                pool.shutdown(wait=True)  # the file and the digest are complete (or abandoned) on return

    def close(self) -> None:
        """Stop at once (from any thread): the blocked `receive` raises DirectFailed."""
        self._closed = True
        if self._sock is not None:
            _close(self._sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
