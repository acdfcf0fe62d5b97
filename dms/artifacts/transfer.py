"""`/dms/artifacts/1.0.0`: one artifact from one peer, in chunks, resumable, verified on arrival.

On one stream: the asker writes a line `{"sha256": h, "offset": n}`; the holder answers a line
`{"size": N}` (or `{"error": "..."}`) and then the raw bytes from `n` to `N`, and closes. The asker
appends them to `partial/<h>` while hashing; a stream that drops or stalls is reopened asking from the
new offset (a bounded number of times without progress). Only when every byte is there and the whole
hashes to `h` does the blob enter the store; otherwise the partial file is removed, the transfer is
counted as refused, and the peer's bytes are never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dms.artifacts import direct
from dms.artifacts.appender import Appender
from dms.artifacts.errors import ArtifactCorrupt, ArtifactTooLarge, QuotaExceeded, TransferFailed
from dms.artifacts.store import Artifact, ArtifactStore, check_hash
from dms.errors import DmsError

log = logging.getLogger(__name__)
T = TypeVar("T")

PROTOCOL = "/dms/artifacts/1.0.0"
CHUNK = 1024 * 1024
"""Bytes per send (libp2p messages of 8 MiB and more fail; small sends cost a bridge crossing each)."""
READ = 4 * 1024 * 1024
REQUEST_TIMEOUT_S = 10.0
DIRECT_MAX_SENDING = 4
"""Direct transfers a holder serves at once; further requests get their bytes over libp2p."""
DIRECT_RECEIVERS = 8
"""Direct transfers an asker receives at once (more wait for a thread)."""
DIRECT_MIN = 1024 * 1024
"""Fewer bytes than this go over the libp2p stream even when the direct path was asked for: setting it
up (a listener, a thread each side, a connection) costs more than it saves on them."""
MAX_TRIES = 4
"""Streams opened in a row without getting a single new byte before the transfer is given up."""


class ByteStream(Protocol):
    """A stream with one peer that carries lines and then raw bytes (dms.network's NetLineStream)."""

    @property
    def remote_peer(self) -> str: ...

    @property
    def remote_host(self) -> str | None:
        """The IP address the connection under this stream goes to (None when unknown)."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def receive(self, wait_s: float) -> bytes: ...

    async def receive_bytes(self, limit: int, wait_s: float) -> bytes: ...

    async def close(self) -> None: ...


class Opener(Protocol):
    async def open(self, peer_id: str, protocol: str) -> ByteStream: ...


@dataclass
class TransferStats:
    served: int = 0
    fetched: int = 0
    resumed: int = 0
    refused: int = 0
    """Transfers whose bytes did not hash to the name asked for."""
    bytes_in: int = 0
    bytes_out: int = 0
    direct: int = 0
    """Transfers (either side) whose bytes took the direct path (direct.py)."""
    direct_strangers: int = 0
    """Connections to a direct listener refused for want of the token."""


class ArtifactTransfer:
    def __init__(
        self, store: ArtifactStore, opener: Opener, *, stall_s: float, max_size: int, direct_host: str | None = None
    ) -> None:
        """`direct_host`: the address to open direct listeners on (the libp2p listen host), and the switch
        for the direct path both ways; None keeps every byte on the libp2p stream."""
        self._store = store
        self._opener = opener
        self._stall_s = stall_s
        self._max_size = max_size
        self._direct_host = direct_host
        self._direct_sending = 0
        # Direct transfers block a thread each (up to 5 s for an asker that never connects): their own
        # threads, so a peer asking for many cannot take the default executor's from the rest of the daemon,
        # and sending apart from receiving, so two nodes fetching from each other never wait on each other.
        self._send_pool = ThreadPoolExecutor(DIRECT_MAX_SENDING, thread_name_prefix="dms-direct-send")
        self._receive_pool = ThreadPoolExecutor(DIRECT_RECEIVERS, thread_name_prefix="dms-direct-receive")
        self._locks: dict[str, asyncio.Lock] = {}
        self.stats = TransferStats()

    # --- holder side ---

    async def serve(self, stream: ByteStream) -> None:
        """Answer one request: the header line, then the bytes from the asked offset."""
        try:
            req = json.loads(await stream.receive(REQUEST_TIMEOUT_S))
            sha = check_hash(str(req["sha256"]))
            offset = req.get("offset", 0)
            if not isinstance(offset, int) or offset < 0:
                raise ValueError("offset must be a non-negative integer")
        except (TimeoutError, ValueError, KeyError, TypeError, DmsError) as exc:
            with contextlib.suppress(DmsError):
                await _answer(stream, {"error": f"bad request: {exc}"})
            return
        art = self._store.get(sha)
        if art is None:
            await _answer(stream, {"error": f"no artifact {sha} here"})
            return
        holder = f"serve:{id(stream)}"
        self._store.pin(holder, {sha})
        try:
            path = self._store.path(sha)
            if (
                req.get("direct") is True
                and self._direct_host is not None
                and art.size - min(offset, art.size) >= DIRECT_MIN
                and await self._serve_direct(stream, sha, path, min(offset, art.size), art.size)
            ):
                return
            await _answer(stream, {"size": art.size})
            with path.open("rb") as f:
                f.seek(min(offset, art.size))
                while chunk := f.read(CHUNK):
                    await stream.send(chunk)
                    self.stats.bytes_out += len(chunk)
            self.stats.served += 1
        except DmsError as exc:  # the asker went away; it resumes from its offset if it wants
            log.debug("serving artifact %s stopped: %s", sha, exc)
        finally:
            self._store.unpin(holder)

    async def _serve_direct(self, stream: ByteStream, sha: str, path: Path, offset: int, size: int) -> bool:
        """Offer the direct path and send through it; False (nothing sent yet) when no listener can open."""
        assert self._direct_host is not None
        if self._direct_sending >= DIRECT_MAX_SENDING:  # the rest wait their turn on libp2p, not on threads
            return False
        try:
            sender = direct.Sender(self._direct_host)
        except OSError as exc:
            log.warning("no direct listener on %s (%s): artifact %s goes over libp2p", self._direct_host, exc, sha)
            return False
        self._direct_sending += 1
        try:
            send = functools.partial(sender.send, path, offset, size, self._stall_s)
            # The sending thread already waits at the listener while the offer goes out: the asker's connection
            # is taken the moment it comes.
            offered = _answer(stream, {"size": size, "direct": sender.offer.to_json()})
            sent = await _in_thread(self._send_pool, send, sender.close, meanwhile=offered)
            self.stats.bytes_out += sent
            self.stats.served += 1
            self.stats.direct += 1
        except (OSError, TimeoutError) as exc:  # the asker went away or never came; it asks again if it wants
            log.info("direct transfer of artifact %s to %s stopped: %s", sha, stream.remote_peer, exc)
        finally:
            self._direct_sending -= 1
            sender.close()
            self.stats.direct_strangers += sender.strangers
        return True

    # --- asker side ---

    async def fetch(self, peer_id: str, sha256: str) -> Artifact:
        """The artifact, from the store or else from `peer_id`. Raises ArtifactCorrupt (the peer sent other
        bytes), ArtifactTooLarge, QuotaExceeded, TransferFailed (with the last reason)."""
        sha = check_hash(sha256)
        lock = self._locks.setdefault(sha, asyncio.Lock())
        async with lock:
            have = self._store.get(sha)
            if have is not None:
                return have
            partial = self._store.partial_path(sha)
            if partial.exists():  # left by an earlier attempt: re-hashed, then resumed
                digest, offset = await asyncio.to_thread(_hash_file, partial)
            else:
                digest, offset = hashlib.sha256(), 0
            if offset:
                self.stats.resumed += 1
            tries, size, last = 0, -1, ""
            use_direct = self._direct_host is not None
            while size < 0 or offset < size:
                if tries >= MAX_TRIES:
                    raise TransferFailed(f"artifact {sha} from {peer_id}: {last} ({tries} tries without progress)")
                tries += 1
                try:
                    size, got = await self._one_stream(peer_id, sha, partial, offset, digest, use_direct)
                except _Progress as exc:  # the stream dropped or stalled: keep what came, ask from there
                    last, got, size = str(exc), exc.got, exc.size
                    if exc.direct:  # the direct path failed once: the rest goes over libp2p, from what the
                        use_direct = False  # file really holds (frames are hashed and written in parallel)
                        digest, held = await asyncio.to_thread(_hash_file, partial)
                        got = held - offset
                except TransferFailed:  # the peer refused, or answered garbage
                    raise
                except (DmsError, OSError, TimeoutError) as exc:  # cannot reach it, or no answer in time
                    if isinstance(exc, (ArtifactTooLarge, QuotaExceeded)):
                        raise
                    last, got = str(exc) or type(exc).__name__, 0
                if got:
                    offset += got
                    tries = 0
                    if offset < size:
                        self.stats.resumed += 1
                        log.info("artifact %s from %s: resuming at byte %d of %d", sha, peer_id, offset, size)
            if offset > size or digest.hexdigest() != sha or partial.stat().st_size != size:
                partial.unlink(missing_ok=True)
                self.stats.refused += 1
                log.warning("refused artifact %s from %s: its bytes hash to something else", sha, peer_id)
                raise ArtifactCorrupt(f"peer {peer_id} sent bytes that do not hash to {sha}; they were discarded")
            art = await self._store.adopt(partial, sha, size)
            self.stats.fetched += 1
            log.info("artifact %s (%d bytes) fetched from %s", sha, size, peer_id)
            return art

    async def _one_stream(
        self, peer_id: str, sha: str, partial: Path, offset: int, digest: Any, use_direct: bool
    ) -> tuple[int, int]:
        """One stream: (the size the peer announced, bytes appended). A drop after some bytes raises
        _Progress so the caller keeps them; refusals raise TransferFailed."""
        stream = await self._opener.open(peer_id, PROTOCOL)
        got = 0
        closing: asyncio.Task[None] | None = None
        try:
            host = stream.remote_host if use_direct else None
            req: dict[str, Any] = {"sha256": sha, "offset": offset}
            if host is not None:
                req["direct"] = True
            await stream.send(json.dumps(req).encode() + b"\n")
            try:
                head = json.loads(await stream.receive(REQUEST_TIMEOUT_S))
            except ValueError as exc:
                raise TransferFailed(f"peer {peer_id} answered garbage: {exc}") from exc
            if not isinstance(head, dict) or "error" in head:
                err = head.get("error") if isinstance(head, dict) else head
                raise TransferFailed(f"peer {peer_id} refused artifact {sha}: {err}")
            size = head.get("size")
            if not isinstance(size, int) or size < offset:
                raise TransferFailed(f"peer {peer_id} announced a bad size {size!r} for artifact {sha}")
            if size > self._max_size:
                raise ArtifactTooLarge(f"artifact {sha} is {size} bytes, over the limit of {self._max_size}")
            self._store.check_room(size)
            if "direct" in head:
                if host is None:
                    raise TransferFailed(f"peer {peer_id} offered a direct path that was not asked for")
                # The libp2p stream has done its part (the holder reads nothing more from it): it closes while
                # the bytes come, not after them.
                closing = asyncio.create_task(stream.close())
                return size, await self._receive_direct(host, head["direct"], peer_id, partial, offset, size, digest)
            with partial.open("ab") as f:
                while offset + got < size:
                    try:
                        data = await stream.receive_bytes(min(READ, size - offset - got), self._stall_s)
                    except (DmsError, TimeoutError) as exc:
                        raise _Progress(str(exc), got, size) from exc
                    if not data:
                        msg = f"peer {peer_id} ended the stream at byte {offset + got} of {size}"
                        raise _Progress(msg, got, size)
                    f.write(data)
                    digest.update(data)
                    got += len(data)
                    self.stats.bytes_in += len(data)
            return size, got
        finally:
            await (stream.close() if closing is None else closing)

    async def _receive_direct(
        self, host: str, offer_json: object, peer_id: str, partial: Path, offset: int, size: int, digest: Any
    ) -> int:
        try:
            offer = direct.Offer.from_json(offer_json)
        except ValueError as exc:
            raise TransferFailed(f"peer {peer_id} answered garbage: {exc}") from exc
        receiver = direct.Receiver(host, offer)
        with Appender(partial) as f:
            try:
                receive = functools.partial(receiver.receive, f, digest, size - offset, self._stall_s)
                got = await _in_thread(self._receive_pool, receive, receiver.close)
            except direct.DirectFailed as exc:
                self.stats.bytes_in += exc.got
                if exc.forged:
                    self.stats.refused += 1
                    log.warning("refused a direct transfer of artifact %s from %s: %s", partial.name, peer_id, exc)
                raise _Progress(f"direct transfer from {peer_id}: {exc}", exc.got, size, direct=True) from exc
            finally:
                receiver.close()
        self.stats.bytes_in += got
        if offset + got < size:
            raise _Progress(f"peer {peer_id} ended the direct transfer at byte {offset + got} of {size}", got, size)
        self.stats.direct += 1
        return got


class _Progress(TransferFailed):
    """The stream ended early after `got` new bytes (kept in the partial file); `direct`: on the direct path."""

    def __init__(self, message: str, got: int, size: int, *, direct: bool = False) -> None:
        super().__init__(message)
        self.got = got
        self.size = size
        self.direct = direct


async def _in_thread(
    pool: ThreadPoolExecutor, fn: Callable[[], T], stop: Callable[[], None], meanwhile: Awaitable[None] | None = None
) -> T:
    """`fn()` in one of `pool`'s threads, and `meanwhile` awaited here while it starts. If the caller is
    cancelled or `meanwhile` fails, `stop()` ends the thread's blocking calls and the thread is waited for
    before the exception goes on, so it never touches the file, the digest or the pinned blob after its
    caller has let go of them."""
    job = asyncio.get_running_loop().run_in_executor(pool, fn)
    try:
        if meanwhile is not None:
            await meanwhile
        return await asyncio.shield(job)
    except BaseException:
        if not job.done():
            stop()
            with contextlib.suppress(Exception):
                await job
        raise


async def _answer(stream: ByteStream, obj: dict[str, Any]) -> None:
    await stream.send(json.dumps(obj).encode() + b"\n")


def _hash_file(path: Path) -> tuple[Any, int]:
    """A sha256 object fed with the file's bytes, and its size (0 when absent)."""
    digest = hashlib.sha256()
    size = 0
    if path.exists():
        with path.open("rb") as f:
            while block := f.read(READ):
                digest.update(block)
                size += len(block)
    return digest, size
