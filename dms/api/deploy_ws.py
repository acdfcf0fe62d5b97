"""The dashboard websocket `/api/v1/run/deploy`, in NuNet's frame shapes (docs/protocols.md).

In: `send-status`, `subscribe`, `cancel`. Out: the job's frames with `job_id` (and `seq`) beside NuNet's
`action`/`message`, and `error` for any bad frame; the connection stays open after an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dms import boundedjson, limits
from dms.api.context import ctx
from dms.api.endpoint import GoBody, go_keys
from dms.errors import Conflict, DmsError
from dms.jobs.requester import RequesterService
from dms.jobs.states import SPState
from dms.store.health import storage_fault

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
CONNECTED = "You are connected to DMS for docker (GPU/CPU) deployment."  # NuNet's text, a string
WS_LIMIT = 1024 * 1024  # aiohttp closes with 1009 past this; our own limit answers first


class _In(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class FundStatus(GoBody):
    """NuNet's send-status message, read as NuNet reads it (keys in any case, unknown keys ignored).
    NuNet acts on `success` only; any other status keeps the quote waiting."""

    transaction_type: str = Field("fund", max_length=64)
    transaction_status: str = Field(max_length=64)
    tx_hash: str | None = Field(None, max_length=100)
    job_id: str | None = Field(None, max_length=64)


class Frame(_In):
    action: str = Field(max_length=64)
    message: Any = None
    job_id: str | None = Field(None, max_length=64)
    after_seq: int = Field(0, ge=0, le=limits.MAX_SEQ)


class BadFrame(Exception):
    pass


def _message_job_id(message: Any) -> str | None:
    job_id = message.get("job_id") if isinstance(message, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


class Connected:
    """The dashboards connected now, so that shutdown can close them instead of waiting for them."""

    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()


OPEN = web.AppKey("deploy_ws_open", Connected)


def install(app: web.Application) -> None:
    """Serve the websocket, and close every open one (1001 going away) when the server shuts down."""
    app[OPEN] = Connected()

    async def going_away(app: web.Application) -> None:
        for ws in list(app[OPEN].sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the node is stopping")

    app.on_shutdown.append(going_away)


def _describe(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(f"{prefix}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


class Session:
    """One dashboard connection: parses its frames and forwards the frames of the jobs it follows."""

    def __init__(self, ws: web.WebSocketResponse, requester: RequesterService) -> None:
        self.ws = ws
        self.requester = requester
        self.following: dict[str, asyncio.Task[None]] = {}

    async def error(self, message: str, job_id: str | None = None) -> None:
        frame: dict[str, Any] = {"action": "error", "message": message}
        if job_id:
            frame["job_id"] = job_id
        await self.ws.send_json(frame)

    def follow(self, job_id: str, after: int = 0) -> None:
        old = self.following.pop(job_id, None)
        if old is not None:
            old.cancel()
        self.following[job_id] = asyncio.create_task(self._forward(job_id, after))

    async def _forward(self, job_id: str, after: int) -> None:
        with contextlib.suppress(ConnectionResetError):
            async for seq, frame in self.requester.frames(job_id, after):
                if self.ws.closed:
                    return
                await self.ws.send_json({**frame, "job_id": job_id, "seq": seq})

    async def handle(self, text: str) -> None:
        if len(text.encode()) > MAX_FRAME:
            raise BadFrame(f"frame of {len(text.encode())} bytes is over the {MAX_FRAME} byte limit")
        try:
            raw = boundedjson.loads(text)
        except boundedjson.JSONRefused as exc:
            raise BadFrame(f"frame refused: {exc}") from exc
        if not isinstance(raw, dict):
            raise BadFrame("frame must be a JSON object with an action")
        try:
            frame = Frame.model_validate(raw)
        except ValidationError as exc:
            raise BadFrame(_describe(exc)) from exc
        if frame.action == "send-status":
            await self._send_status(frame)
        elif frame.action == "subscribe":
            if not frame.job_id:
                raise BadFrame("subscribe needs a job_id")
            await self.requester.get(frame.job_id)
            self.follow(frame.job_id, frame.after_seq)
        elif frame.action in ("cancel", "terminate-job"):
            job_id = frame.job_id or _message_job_id(frame.message) or await self._only_live_job(frame.action)
            await self.requester.cancel(job_id)
            if job_id not in self.following:
                self.follow(job_id)
        else:
            raise BadFrame(f"unknown action {frame.action!r}; expected send-status, subscribe, cancel or terminate-job")

    async def _only_live_job(self, action: str) -> str:
        """`terminate-job` as NuNet-era clients send it names no job: the one live job this connection follows."""
        live = []
        for job_id, task in self.following.items():
            if not task.done() and not SPState((await self.requester.get(job_id)).state).is_terminal():
                live.append(job_id)
        if len(live) != 1:
            raise BadFrame(f"{action} without a job_id: this connection follows {len(live)} live jobs, name one")
        return live[0]

    async def _send_status(self, frame: Frame) -> None:
        if not isinstance(frame.message, dict):
            raise BadFrame("send-status needs a message object {transaction_type, transaction_status}")
        try:
            status = FundStatus.model_validate(go_keys(FundStatus, frame.message))
        except ValidationError as exc:
            raise BadFrame(_describe(exc, "message.")) from exc
        job_id = frame.job_id or status.job_id
        if job_id is None:
            waiting = await self.requester.awaiting_payment()
            if len(waiting) != 1:
                raise BadFrame(
                    f"send-status without a job_id: {len(waiting)} quotes are awaiting payment, name one with job_id"
                )
            job_id = waiting[0]
        # NuNet acts on `success` only; every other status (NuNet's dashboards send `pending`) waits.
        known = "success" if status.transaction_status == "success" else "pending"
        try:
            await self.requester.send_status(job_id, known, status.tx_hash)
        except Conflict:  # e.g. another dashboard paid first: this one still sees how the job goes
            if job_id not in self.following:
                self.follow(job_id)
            raise
        if job_id not in self.following:
            self.follow(job_id)


async def deploy_ws(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    # The Origin, Host and token were checked by the boundary middleware before this handler runs.
    ws = web.WebSocketResponse(max_msg_size=WS_LIMIT, heartbeat=30)
    await ws.prepare(request)
    session = Session(ws, c.requester)
    await ws.send_json({"action": "connected", "message": CONNECTED, "dms_version": c.version})
    sockets = request.app[OPEN].sockets
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    await session.handle(msg.data)
                except BadFrame as exc:
                    await session.error(str(exc))
                except DmsError as exc:
                    await session.error(exc.message)
                except Exception as exc:  # the socket stays open whatever went wrong with one frame
                    fault = storage_fault(exc)
                    if fault is None:
                        log.exception("deploy websocket: unhandled error on a frame")
                    await session.error(
                        f"{fault}; free some space and retry"
                        if fault
                        else "internal error; the daemon's log has the details"
                    )
            elif msg.type == WSMsgType.BINARY:
                await session.error("binary frames are not supported; send JSON text frames")
    finally:
        sockets.discard(ws)
        for task in session.following.values():
            task.cancel()
    return ws
