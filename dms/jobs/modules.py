"""A wasm job's module in the deployment stream, until artifacts carry it: chunks out, chunks in, checked.

The CP asks (`need_module`) only when it lacks the module; the SP answers with `module_chunk`s of at most
MODULE_CHUNK bytes each (base64); the CP keeps the module only when its sha256 is the one the job names.
"""

from __future__ import annotations

import base64
import binascii

from dms.errors import DmsError
from dms.executor.modules import MAX_MODULE_BYTES, ModuleStore
from dms.jobs.protocol import (
    MODULE_CHUNK,
    Deploy,
    ModuleChunk,
    NeedModule,
    ProtocolError,
    decode_to_provider,
    encode,
)
from dms.jobs.transport import LineStream

CHUNK_TIMEOUT_S = 10.0


async def receive_module(stream: LineStream, req: Deploy, store: ModuleStore) -> str | None:
    """Fetch the job's module from the requester when we lack it; why not, when it did not arrive whole.

    Raises StreamClosed or TimeoutError when the requester goes away.
    """
    sha = req.spec.module
    if req.spec.executor != "wasm" or sha is None or store.has(sha):
        return None
    await stream.send(encode(NeedModule(type="need_module", job_id=req.job_id, sha256=sha)))
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            msg = decode_to_provider(await stream.receive(CHUNK_TIMEOUT_S))
        except ProtocolError as exc:
            return f"module transfer failed: {exc}"
        if not isinstance(msg, ModuleChunk) or msg.job_id != req.job_id:
            return f"module transfer failed: expected a module_chunk, got {msg.type}"
        try:
            part = base64.b64decode(msg.data, validate=True)
        except binascii.Error:
            return "module transfer failed: a chunk is not base64"
        size += len(part)
        if size > MAX_MODULE_BYTES:
            return f"module transfer failed: over {MAX_MODULE_BYTES} bytes"
        parts.append(part)
        if msg.last:
            break
    try:
        await store.put_blob(b"".join(parts), expect_sha256=sha)
    except DmsError as exc:
        return f"module transfer failed: {exc}"
    return None


async def send_module(stream: LineStream, ask: NeedModule, store: ModuleStore) -> None:
    """Answer `need_module` with the module in chunks. Raises NotFound (not here), StreamClosed."""
    data = await store.read(ask.sha256)
    for at in range(0, max(len(data), 1), MODULE_CHUNK):
        part = data[at : at + MODULE_CHUNK]
        last = at + MODULE_CHUNK >= len(data)
        chunk = ModuleChunk(type="module_chunk", job_id=ask.job_id, data=base64.b64encode(part).decode(), last=last)
        await stream.send(encode(chunk))
