"""Checkpoints: snapshots of a running job's checkpoint path, kept as artifacts on the SP.

On the provider (`CheckpointRun`): the checkpoint path is the job's own bounded disk, `/workspace` (an
ext4 image, dms.executor.jobdisk: one mount, so the job's disk stays bounded). Every `interval_s` while the
container runs its files are copied out of the image (`debugfs rdump`, after a flush) into
`<data dir>/jobs/<job id>/checkpoint`, and once more after it ended (the executor copies the unmounted
image before removing it); the folder becomes a tar artifact (`staging._tar`) and a numbered `checkpoint`
event `{seq, sha256, size, at, final}`; a snapshot identical to the previous one is not sent again. A
restored checkpoint is unpacked into that folder and the job's disk is made from it (`mkfs.ext4 -d`).

On the service provider (`JobCheckpoints`): each reported checkpoint is fetched from the provider over
`/dms/artifacts/1.0.0` in the background (the job's event stream is not held up), verified like every
transfer, and recorded per job in `<artifacts>/checkpoints/<job id>.json` (one writer: this class).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dms.artifacts.outputs import JOB_ID
from dms.artifacts.store import Artifact, check_hash
from dms.artifacts.transfer import ArtifactTransfer
from dms.errors import DmsError

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Snapshot = Callable[[bool], Awaitable[Artifact | None]]
"""Take a snapshot (final: the job has ended) as an artifact; None when there is nothing to keep."""


class CheckpointRun:
    """The checkpoints of one run of a job on its provider: `start()` once the container runs, `finish()`
    when it has ended (the last snapshot), `stop()` always."""

    def __init__(
        self, snapshot: Snapshot, interval_s: float, emit: Emit, clock: Callable[[], float] = time.time
    ) -> None:
        self._snapshot = snapshot
        self._interval_s = interval_s
        self._emit = emit
        self._clock = clock
        self._seq = 0
        self._last: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def continue_from(self, seq: int, sha256: str) -> None:
        """Number on after checkpoint `seq` (`sha256`), taken before the provider restarted (an adopted job),
        so the SP keeps each under its own number."""
        self._seq, self._last = seq, sha256

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.take(final=False)
            except (DmsError, OSError) as exc:  # a full store, a vanished file: the next one may work
                log.warning("checkpoint failed: %s", exc)

    async def take(self, *, final: bool) -> None:
        """Snapshot now; emit it unless it is the same as the last one (a final one is always marked)."""
        async with self._lock:
            art = await self._snapshot(final)
            if art is None or (art.sha256 == self._last and not final):
                return
            if art.sha256 == self._last and final and self._seq:
                self._seq -= 1  # re-announce the same bytes under the same number, now marked final
            self._seq += 1
            self._last = art.sha256
            at = self._clock()
            await self._emit({"seq": self._seq, "sha256": art.sha256, "size": art.size, "at": at, "final": final})

    async def finish(self) -> None:
        await self.stop()
        await self.take(final=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class JobCheckpoints:
    def __init__(self, root: Path, transfer: ArtifactTransfer) -> None:
        self._root = root
        self._transfer = transfer
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._numbers: dict[str, dict[tuple[str, int], int]] = {}

    def open(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def receive(self, job_id: str, cp_peer: str, reported: dict[str, Any]) -> None:
        """Fetch and record a checkpoint a provider reported, in the background (errors are logged).

        The SP numbers a job's checkpoints itself, in the order they are reported, across runs on
        different providers (each provider numbers only its own run's); a provider's re-announcement of
        the same snapshot as final keeps its number."""
        if not JOB_ID.match(job_id) or not isinstance(reported.get("seq"), int):
            log.warning("job %s: bad checkpoint report from %s: %r", job_id, cp_peer, reported)
            return
        numbers = self._numbers.setdefault(job_id, {})
        if not numbers:
            numbers.update({(e.get("provider", ""), e.get("run_seq", e["seq"])): e["seq"] for e in self.of(job_id)})
        key = (cp_peer, reported["seq"])
        seq = numbers.setdefault(key, max(numbers.values(), default=0) + 1)
        task = asyncio.create_task(self._receive(job_id, cp_peer, seq, reported))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive(self, job_id: str, cp_peer: str, seq: int, reported: dict[str, Any]) -> None:
        try:
            at = reported["at"]
            if not isinstance(at, int | float):
                raise ValueError("bad checkpoint time")
            art = await self._transfer.fetch(cp_peer, check_hash(str(reported["sha256"])))
        except (DmsError, KeyError, ValueError) as exc:
            log.warning("job %s: checkpoint %r not received from %s: %s", job_id, reported.get("seq"), cp_peer, exc)
            return
        entry = {"seq": seq, "sha256": art.sha256, "size": art.size, "at": float(at),
                 "final": bool(reported.get("final")), "provider": cp_peer, "run_seq": reported["seq"]}  # fmt: skip
        async with self._locks.setdefault(job_id, asyncio.Lock()):
            entries = [e for e in self.of(job_id) if e["seq"] != seq] + [entry]
            entries.sort(key=lambda e: int(e["seq"]))
            tmp = self._root / f".{job_id}.json.tmp"
            tmp.write_text(json.dumps(entries))
            os.replace(tmp, self._root / f"{job_id}.json")

    def latest(self, job_id: str) -> tuple[int, str] | None:
        """The newest checkpoint held for `job_id` (its number and hash), if any."""
        entries = self.of(job_id)
        return (int(entries[-1]["seq"]), str(entries[-1]["sha256"])) if entries else None

    def of(self, job_id: str) -> list[dict[str, Any]]:
        """The checkpoints recorded for `job_id`, by sequence number."""
        if not JOB_ID.match(job_id):
            return []
        try:
            data = json.loads((self._root / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return []
        return list(data) if isinstance(data, list) else []

    def all(self) -> dict[str, list[dict[str, Any]]]:
        """Every job's checkpoints, by job id."""
        return {p.stem: self.of(p.stem) for p in sorted(self._root.glob("*.json"))}
