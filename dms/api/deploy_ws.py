"""The dashboard websocket `/api/v1/run/deploy`, in NuNet's frame shapes (DESIGN.md: Websocket).

In: `send-status`, `subscribe`, `cancel`. Out: the job's frames with `job_id` (and `seq`) beside NuNet's
`action`/`message`, and `error` for any bad frame; the connection stays open after an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dms.api.context import ctx
from dms.errors import DmsError
from dms.jobs.requester import RequesterService

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
WS_LIMIT = 1024 * 1024  # aiohttp closes with 1009 past this; our own limit answers first


class _In(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class FundStatus(_In):
    transaction_type: Literal["fund"]
    transaction_status: Literal["success", "pending"]
    tx_hash: str | None = Field(None, max_length=100)
    job_id: str | None = Field(None, max_length=64)


class Frame(_In):
    action: str = Field(max_length=64)
    message: Any = None
    job_id: str | None = Field(None, max_length=64)
    after_seq: int = Field(0, ge=0)


class BadFrame(Exception):
    pass


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
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadFrame(f"frame is not valid JSON: {exc}") from exc
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
        elif frame.action == "cancel":
            if not frame.job_id:
                raise BadFrame("cancel needs a job_id")
            await self.requester.cancel(frame.job_id)
            if frame.job_id not in self.following:
                self.follow(frame.job_id)
        else:
            raise BadFrame(f"unknown action {frame.action!r}; expected send-status, subscribe or cancel")

    async def _send_status(self, frame: Frame) -> None:
        if not isinstance(frame.message, dict):
            raise BadFrame("send-status needs a message object {transaction_type, transaction_status}")
        try:
            status = FundStatus.model_validate(frame.message)
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
        await self.requester.send_status(job_id, status.transaction_status, status.tx_hash)
        if job_id not in self.following:
            self.follow(job_id)


async def deploy_ws(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    # The Origin, Host and token were checked by the boundary middleware before this handler runs.
    ws = web.WebSocketResponse(max_msg_size=WS_LIMIT, heartbeat=30)
    await ws.prepare(request)
    session = Session(ws, c.requester)
    await ws.send_json({"action": "connected", "message": {"dms_version": c.version}})
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    await session.handle(msg.data)
                except BadFrame as exc:
                    await session.error(str(exc))
                except DmsError as exc:
                    await session.error(exc.message)
            elif msg.type == WSMsgType.BINARY:
                await session.error("binary frames are not supported; send JSON text frames")
    finally:
        for task in session.following.values():
            task.cancel()
    return ws
