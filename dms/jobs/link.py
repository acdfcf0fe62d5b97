"""The service provider's connection to one job's compute provider: offer, follow, re-attach, cancel.

A link only reads and sends; it writes no state. What it learns (the provider's answer, its events, its
loss) goes to the job's owner as messages, in order, through the `deliver` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dms.errors import DmsError
from dms.executor.modules import ModuleStore
from dms.jobs.modules import send_module
from dms.jobs.protocol import (
    PROTOCOL,
    Accepted,
    Attach,
    Cancel,
    Deploy,
    End,
    Event,
    NeedModule,
    ProtocolError,
    Rejected,
    decode_to_requester,
    encode,
)
from dms.jobs.transport import Dialer, LineStream, NetworkError, StreamClosed

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class FromProvider:
    """One numbered event from the provider (status, logs, result)."""

    event: Event


@dataclass(frozen=True)
class Lost:
    """The provider is gone: unreachable for re-attaching, or silent for 3 heartbeats."""

    reason: str


async def offer(
    dialer: Dialer, peer: str, deploy: Deploy, modules: ModuleStore | None = None,
    opening: Awaitable[LineStream] | None = None,
) -> LineStream | str:  # fmt: skip
    """The open stream once `peer` accepted the job; its refusal (or why it could not answer) as a sentence.
    A wasm job's provider may first ask for the module (`need_module`): it is sent from `modules`.
    `opening`: the stream to `peer` already being opened (see `open_ahead`), else it is opened here."""
    try:
        stream = await (dialer.open(peer, PROTOCOL) if opening is None else opening)
    except NetworkError as exc:
        return f"unreachable ({exc})"
    try:
        await stream.send(encode(deploy))
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            msg = decode_to_requester(await stream.receive(max(deadline - time.monotonic(), 0.01)))
            if isinstance(msg, NeedModule) and msg.job_id == deploy.job_id and modules is not None:
                await send_module(stream, msg, modules)
                deadline = time.monotonic() + ANSWER_TIMEOUT_S
            if isinstance(msg, Accepted) and msg.job_id == deploy.job_id:
                return stream
            if isinstance(msg, Rejected) and msg.job_id == deploy.job_id:
                answer = msg.reason
                break
    except TimeoutError:
        answer = "no answer"
    except StreamClosed as exc:
        answer = f"stream closed ({exc})"
    except ProtocolError as exc:
        answer = f"bad answer ({exc})"
    except DmsError as exc:  # the module asked for is no longer here
        answer = f"cannot send the module: {exc}"
    except BaseException:
        await stream.close()
        raise
    await stream.close()
    return answer


@dataclass(frozen=True)
class Opening:
    """A deployment stream being opened ahead, and when that began: its freshness counts from then."""

    task: asyncio.Task[LineStream]
    at: float


def open_ahead(dialer: Dialer, peer: str) -> Opening:
    """Start opening a deployment stream to `peer` while something else is awaited (the payment check, its
    commit): opening one takes a few ms here (stream set-up and protocol negotiation, both ends). Hand it to
    `offer` (its task), or to `close_opened` when it is not used."""
    return Opening(asyncio.create_task(dialer.open(peer, PROTOCOL)), time.monotonic())


async def close_opened(opening: Opening) -> None:
    """Drop a stream opened ahead and not used (it is closed if it opened; whatever went wrong is moot)."""
    if not opening.task.done():
        opening.task.cancel()
    try:
        stream = await opening.task
    except (asyncio.CancelledError, Exception) as exc:  # cancelled above, or it could not be opened
        if not opening.task.done():
            raise  # we were cancelled ourselves
        log.debug("a stream opened ahead ended with %r", exc)
        return
    with contextlib.suppress(Exception):
        await stream.close()


class Ahead:
    """The deployment stream to a job's first provider, opened ahead of the request (see `open_ahead`) and
    used only while fresh: its provider waits a bounded time for the request on it (`fresh_s` is less)."""

    def __init__(self, dialer: Dialer, fresh_s: float, opening: Opening | None = None) -> None:
        """`opening`: one already being opened (at the quote), held from now."""
        self._dialer = dialer
        self._fresh_s = fresh_s
        self._opening = opening

    def open(self, peer: str) -> None:
        """Start opening one to `peer`, unless one is open or opening."""
        if self._opening is None:
            self._opening = open_ahead(self._dialer, peer)

    def stale_in(self) -> float | None:
        """Seconds until the stream held goes stale (None: none held)."""
        return None if self._opening is None else self._opening.at + self._fresh_s - time.monotonic()

    async def take(self) -> asyncio.Task[LineStream] | None:
        """The stream being opened, for `offer`, if still fresh and not failed (a stale one is closed); None
        otherwise."""
        opening, self._opening = self._opening, None
        if opening is None:
            return None
        task = opening.task
        failed = task.done() and (task.cancelled() or task.exception() is not None)
        if failed or time.monotonic() - opening.at > self._fresh_s:
            await close_opened(opening)  # its provider may have given up waiting for the request on it
            return None  # (or it could not be opened then: the offer dials again)
        return task

    async def close(self) -> None:
        """Drop the stream held, if any (not taken: the payment failed, the quote expired, the job ended)."""
        opening, self._opening = self._opening, None
        if opening is not None:
            await close_opened(opening)


class ProviderLink:
    """Follows one job's events from its provider until the end marker, re-attaching after a drop."""

    def __init__(
        self, job_id: str, peer: str, dialer: Dialer, heartbeat_s: float, deliver: Callable[[object], None]
    ) -> None:
        self._job_id = job_id
        self._peer = peer
        self._dialer = dialer
        self._heartbeat_s = heartbeat_s
        self._deliver = deliver
        self._stream: LineStream | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, stream: LineStream | None, after: int) -> None:
        """Follow from `stream` (an accepted offer), or re-attach after event `after` when None."""
        self._stream = stream
        self._task = asyncio.create_task(self._run(after))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._stream is not None:
            await self._stream.close()
            self._stream = None

    async def cancel(self) -> None:
        """Ask the provider to stop the job. Raises NetworkError when it cannot be reached."""
        msg = encode(Cancel(type="cancel", job_id=self._job_id))
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(StreamClosed):
                await stream.send(msg)
                return
        side = await self._dialer.open(self._peer, PROTOCOL)
        try:
            await side.send(msg)
        finally:
            await side.close()

    async def _run(self, last: int) -> None:
        silent = 3 * self._heartbeat_s
        while True:
            if self._stream is None:
                stream = await self._reattach(last)
                if isinstance(stream, str):
                    self._deliver(Lost(stream))
                    return
                self._stream = stream
            try:
                msg = decode_to_requester(await self._stream.receive(silent))
            except TimeoutError:
                self._deliver(Lost(f"silent for {silent:g} s"))
                return
            except ProtocolError as exc:
                log.warning("job %s: bad message from the provider: %s", self._job_id, exc)
                continue
            except StreamClosed:
                await self._stream.close()
                self._stream = None
                continue
            if isinstance(msg, End):
                return
            if isinstance(msg, Event) and msg.job_id == self._job_id and msg.seq > last:
                last = msg.seq
                self._deliver(FromProvider(msg))
            # heartbeats and stray answers only prove the provider is alive

    async def _reattach(self, after: int) -> LineStream | str:
        """A new stream resuming after event `after`; the reason it is lost after 3 heartbeats of trying."""
        deadline = time.monotonic() + 3 * self._heartbeat_s
        reason = "unknown"
        while (left := deadline - time.monotonic()) > 0:
            # No dial outlives the deadline (py-libp2p retries a refused one for most of a second): one still
            # running then is left to finish and its stream, if any, closed.
            dialing = asyncio.ensure_future(self._dialer.open(self._peer, PROTOCOL))
            try:
                done, _ = await asyncio.wait({dialing}, timeout=left)
            except asyncio.CancelledError:
                dialing.add_done_callback(_close_late)
                raise
            if not done:
                dialing.add_done_callback(_close_late)
                if reason == "unknown":
                    reason = f"no answer within {3 * self._heartbeat_s:g} s"
                break
            try:
                stream = dialing.result()
            except NetworkError as exc:
                reason = str(exc)
                await asyncio.sleep(min(self._heartbeat_s / 2, max(deadline - time.monotonic(), 0)))  # retry interval
                continue
            try:
                await stream.send(encode(Attach(type="attach", job_id=self._job_id, after_seq=after)))
                msg = decode_to_requester(await stream.receive(ANSWER_TIMEOUT_S))
            except (StreamClosed, TimeoutError, ProtocolError) as exc:
                await stream.close()
                reason = str(exc) or type(exc).__name__
                continue
            if isinstance(msg, Accepted):
                return stream
            await stream.close()
            return msg.reason if isinstance(msg, Rejected) else "unexpected answer"
        return reason


def _close_late(dialing: asyncio.Future[LineStream]) -> None:
    """A dial given up on that opened after all: its stream is closed."""
    if not dialing.cancelled() and dialing.exception() is None:
        asyncio.create_task(dialing.result().close())  # noqa: RUF006 - close() never raises
