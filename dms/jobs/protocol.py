"""`/dms/deployment/1.0.0` messages: newline-delimited JSON, one stream per job.

SP -> CP, first line: `deploy` (a new job) or `attach` (re-attach after a drop, from a sequence number);
later lines: `cancel`. CP -> SP: `accepted` or `rejected`, then numbered `event`s (status, logs, result),
`heartbeat`s while quiet, and `end` after the result. A `wasm` job's module travels in the stream when the
CP lacks it: the CP answers the `deploy` with `need_module`, the SP sends `module_chunk`s (base64, each
well under the line limit, the last marked), and the CP checks the sha256 before admission. Every
incoming line is checked here, strictly, before anything acts on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from dms import boundedjson, limits
from dms.jobs.spec import JobSpec, Strict

PROTOCOL = "/dms/deployment/1.0.0"
MAX_LINE = 256 * 1024
FIRST_LINE_TIMEOUT_S = 10.0
"""How long a provider waits for the first message on a new stream before it closes it."""
JobId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class ProtocolError(Exception):
    """A line that is not a valid message; the message says what is wrong with it."""


class Sandbox(Strict):
    """Sandbox fields a request may carry. The provider refuses anything but these defaults."""

    privileged: bool = False
    network_mode: str = "none"
    mounts: list[str] = Field(default_factory=list)
    cap_add: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)


class Payment(Strict):
    price: int = Field(ge=0, le=limits.MAX_WEI)
    tx_hash: str | None = Field(None, max_length=100)
    arbiter: str | None = Field(None, max_length=42, description="The SP wallet that settles the escrow.")
    run: int = Field(1, ge=1, le=1000, description="Which run of the job this pays for (its own deposit).")


class Deploy(Strict):
    type: Literal["deploy"]
    job_id: JobId
    spec: JobSpec
    sandbox: Sandbox = Sandbox()
    payment: Payment


class Attach(Strict):
    type: Literal["attach"]
    job_id: JobId
    after_seq: int = Field(ge=0, le=limits.MAX_SEQ)


class Cancel(Strict):
    type: Literal["cancel"]
    job_id: JobId


MODULE_CHUNK = 128 * 1024
"""Raw bytes per `module_chunk` (about 171 KiB once base64-encoded, under MAX_LINE)."""


class ModuleChunk(Strict):
    type: Literal["module_chunk"]
    job_id: JobId
    data: str = Field(max_length=(MODULE_CHUNK * 4) // 3 + 4, description="base64")
    last: bool


class NeedModule(Strict):
    type: Literal["need_module"]
    job_id: JobId
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Accepted(Strict):
    type: Literal["accepted"]
    job_id: JobId


class Rejected(Strict):
    type: Literal["rejected"]
    job_id: JobId
    reason: str


class Event(Strict):
    """A numbered job event. `kind` is status (`state`), logs (`stdout`, `stderr`), result, or checkpoint
    (`seq`, `sha256`, `size`, `at`, `final`: dms.artifacts.checkpoints)."""

    type: Literal["event"]
    job_id: JobId
    seq: int = Field(ge=1, le=limits.MAX_SEQ)
    kind: Literal["status", "logs", "result", "checkpoint"]
    data: dict[str, Any]


class Heartbeat(Strict):
    type: Literal["heartbeat"]


class End(Strict):
    type: Literal["end"]
    job_id: JobId


ToProvider = Annotated[Deploy | Attach | Cancel | ModuleChunk, Field(discriminator="type")]
ToRequester = Annotated[Accepted | Rejected | Event | Heartbeat | End | NeedModule, Field(discriminator="type")]
_to_provider: TypeAdapter[Deploy | Attach | Cancel | ModuleChunk] = TypeAdapter(ToProvider)
_to_requester: TypeAdapter[Accepted | Rejected | Event | Heartbeat | End | NeedModule] = TypeAdapter(ToRequester)


def encode(msg: Strict) -> bytes:
    return msg.model_dump_json().encode() + b"\n"


def joined(lines: list[bytes], limit: int) -> list[bytes]:
    """Pure: encoded messages concatenated, in order, into as few writes as keep each within `limit` bytes (a
    longer one is a write of its own): a sender with several messages ready crosses to the network once."""
    writes: list[bytes] = []
    for line in lines:
        if writes and len(writes[-1]) + len(line) <= limit:
            writes[-1] += line
        else:
            writes.append(line)
    return writes


def _load(line: bytes) -> Any:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes is over the {MAX_LINE} byte limit")
    try:
        return boundedjson.loads(line)
    except boundedjson.JSONRefused as exc:
        raise ProtocolError(f"message refused: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5])


def decode_to_provider(line: bytes) -> Deploy | Attach | Cancel | ModuleChunk:
    try:
        return _to_provider.validate_python(_load(line))
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from exc


def decode_to_requester(line: bytes) -> Accepted | Rejected | Event | Heartbeat | End | NeedModule:
    try:
        return _to_requester.validate_python(_load(line))
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from exc
