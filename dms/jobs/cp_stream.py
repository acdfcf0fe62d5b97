"""The provider's side of `/dms/deployment/1.0.0` streams: read the requester's first line (deploy, attach
or cancel), answer it, then send the job's stored and live events until its end; while a requester follows,
its cancels are heard. Once the last stream of a live `resume: on-failure` job is gone, the job is stopped
unless one re-attaches within 3 heartbeats (its requester may have started a new run elsewhere).

It writes no job row: admission, cancels and stops go through the callables the provider passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from dms.jobs.feed import EventFeed
from dms.jobs.protocol import (
    FIRST_LINE_TIMEOUT_S,
    MAX_LINE,
    Accepted,
    Attach,
    Cancel,
    Deploy,
    End,
    Event,
    Heartbeat,
    ModuleChunk,
    ProtocolError,
    Rejected,
    decode_to_provider,
    encode,
    joined,
)
from dms.jobs.transport import LineStream, StreamClosed
from dms.store.jobs import JobStore
from dms.store.models import CPJobRow

log = logging.getLogger(__name__)


class DeploymentStreams:
    """Serves deployment streams for the provider; owns who follows each job and the pending fences."""

    def __init__(
        self,
        jobs: JobStore[CPJobRow],
        feed: EventFeed,
        heartbeat_s: float,
        admit: Callable[[LineStream, Deploy, str], Awaitable[str | None]],
        cancel: Callable[[str, str], Awaitable[str | None]],
        attached: Callable[[str], None],
        live: Callable[[str], bool],
        stop: Callable[[str], Awaitable[None]],
    ) -> None:
        """`admit`: a new job's module (if it comes in the stream) then admission, the refusal reason or None;
        `cancel`: a requester's cancel (job id, peer); `attached`: a requester re-attached to this job;
        `live`: the job runs here and has not ended; `stop`: stop the job's run."""
        self._jobs = jobs
        self._feed = feed
        self._heartbeat_s = heartbeat_s
        self._admit = admit
        self._cancel = cancel
        self._attached = attached
        self._live = live
        self._stop = stop
        self._followers: defaultdict[str, int] = defaultdict(int)
        self._fences: set[asyncio.Task[None]] = set()

    @property
    def fences(self) -> tuple[asyncio.Task[None], ...]:
        """The pending stops of jobs whose requesters are gone (cancelled by the provider's `stop`)."""
        return tuple(self._fences)

    async def serve(self, stream: LineStream) -> None:
        """Handle one `/dms/deployment/1.0.0` stream from a requester, until the job's end or a drop."""
        peer = stream.remote_peer
        try:
            try:
                first = decode_to_provider(await stream.receive(FIRST_LINE_TIMEOUT_S))
            except ProtocolError as exc:
                log.warning("bad deployment request from %s: %s", peer, exc)
                return
            if isinstance(first, Cancel):
                await self._cancel(first.job_id, peer)
                return
            if isinstance(first, ModuleChunk):
                log.warning("bad deployment request from %s: a module chunk before any deploy", peer)
                return
            if isinstance(first, Deploy):
                known = await self._jobs.get(first.job_id)
                if known is not None and known.sp_peer_id == peer:
                    reason = None  # its requester crashed before it stored our answer: re-attach from the start
                else:
                    reason = await self._admit(stream, first, peer)
                after = 0
            else:
                reason = await self._check_attach(first, peer)
                after = first.after_seq
            if reason is not None:
                await stream.send(encode(Rejected(type="rejected", job_id=first.job_id, reason=reason)))
                return
            await stream.send(encode(Accepted(type="accepted", job_id=first.job_id)))
            await self._follow_fenced(stream, first.job_id, after)
        except (StreamClosed, TimeoutError):
            pass
        finally:
            await stream.close()

    async def _check_attach(self, req: Attach, peer: str) -> str | None:
        row = await self._jobs.get(req.job_id)
        if row is None or row.sp_peer_id != peer:
            return f"no job {req.job_id} from this peer"
        self._attached(req.job_id)
        return None

    async def _follow_fenced(self, stream: LineStream, job_id: str, after: int) -> None:
        """`_follow`; once the last requester stream of a running job that may be resumed elsewhere
        (`resume: on-failure`) is gone, the job is stopped unless one re-attaches within 3 heartbeats:
        its SP may have started a new run elsewhere (the stop takes the last checkpoint first)."""
        self._followers[job_id] += 1
        try:
            await self._follow(stream, job_id, after)
        finally:
            self._followers[job_id] -= 1
            if not self._followers[job_id]:
                del self._followers[job_id]
                if self._live(job_id):
                    fence = asyncio.create_task(self._fence(job_id))
                    self._fences.add(fence)
                    fence.add_done_callback(self._fences.discard)

    async def _fence(self, job_id: str) -> None:
        row = await self._jobs.get(job_id)
        if row is None or row.spec.get("resume") != "on-failure":
            return
        await asyncio.sleep(3 * self._heartbeat_s)  # the SP's own bound for re-attaching
        if self._live(job_id) and not self._followers.get(job_id):
            log.warning("job %s: its requester is gone for 3 heartbeats; stopping it (it may run elsewhere)", job_id)
            await self._stop(job_id)

    async def _follow(self, stream: LineStream, job_id: str, after: int) -> None:
        """Send stored events after `after`, then live ones, heartbeats while quiet; listen for cancel."""
        reader = asyncio.create_task(self._read_cancels(stream, job_id))
        try:
            async with contextlib.aclosing(self._feed.batches(job_id, after, self._heartbeat_s)) as batches:
                async for batch in batches:
                    if batch is None:
                        await stream.send(encode(Heartbeat(type="heartbeat")))
                        continue
                    lines, ended = [], False  # what there is goes in as few writes as fit (each crosses a thread)
                    for item in batch:
                        ev = Event(type="event", job_id=job_id, seq=item.seq, kind=item.kind, data=item.data)  # type: ignore[arg-type]
                        lines.append(encode(ev))
                        if item.kind == "result":
                            lines.append(encode(End(type="end", job_id=job_id)))
                            ended = True
                            break
                    for write in joined(lines, MAX_LINE):
                        await stream.send(write)
                    if ended:
                        return
        finally:
            reader.cancel()

    async def _read_cancels(self, stream: LineStream, job_id: str) -> None:
        with contextlib.suppress(StreamClosed):
            while True:
                try:
                    msg = decode_to_provider(await stream.receive(3600))
                except (ProtocolError, TimeoutError):
                    continue
                if isinstance(msg, Cancel) and msg.job_id == job_id:
                    await self._cancel(job_id, stream.remote_peer)
