"""What a service-provider job's owner task (`sp_job.py`) receives and what it shows: the commands of the
REST and websocket handlers (`Pay`, `CancelJob`, each answered once), its helpers' reports (`Verified`,
`Offered`), and the dashboard frames it stores (NuNet's shapes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dms.jobs.states import SPState
from dms.jobs.transport import LineStream

Frame = dict[str, Any]


def log_frames(stdout: str, stderr: str) -> list[Frame]:
    """The dashboard frames for one log batch: NuNet's `log-stream-response`, one stream per frame, at the
    top level of the frame (`{"action": "log-stream-response", "stdout": "..."}`)."""
    streams = (("stdout", stdout), ("stderr", stderr))
    return [{"action": "log-stream-response", name: text} for name, text in streams if text]


def final_frame(state: SPState, reason: str | None, code: int | None, outputs: dict[str, Any] | None = None) -> Frame:
    extra = {"outputs": outputs} if outputs else {}
    if state == SPState.COMPLETED:
        return {"action": "job-completed", "message": None, "detail": {"exit_code": code, **extra}}
    why = reason or state.value
    detail: dict[str, Any] = {"reason": why, **extra}
    if code is not None:
        detail["exit_code"] = code
    return {"action": "job-failed", "message": why, "detail": detail}


@dataclass
class Pay:
    """The dashboard's `send-status`."""

    status: str
    tx_hash: str | None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class CancelJob:
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class Verified:
    tx: str | None
    error: Exception | None


@dataclass(frozen=True)
class Offered:
    stream: LineStream | None
    peer: str | None
    refusals: tuple[str, ...]


def answer(msg: object, error: Exception | None) -> None:
    """Resolve a command's future once (other messages have none)."""
    if isinstance(msg, Pay | CancelJob) and not msg.done.done():
        if error is None:
            msg.done.set_result(None)
        else:
            msg.done.set_exception(error)
