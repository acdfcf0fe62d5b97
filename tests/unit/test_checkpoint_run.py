"""CheckpointRun numbering: identical snapshots are not sent twice; the final one is always marked."""

from __future__ import annotations

from typing import Any

from dms.artifacts import Artifact
from dms.artifacts.checkpoints import CheckpointRun


async def test_numbering_skips_repeats_and_marks_the_final() -> None:
    snaps = iter(["a", "a", "b", None, "b", "b"])
    sent: list[dict[str, Any]] = []

    async def snapshot(final: bool) -> Artifact | None:
        h = next(snaps)
        return None if h is None else Artifact(h * 64, 10)

    async def emit(data: dict[str, Any]) -> None:
        sent.append(data)

    run = CheckpointRun(snapshot, 3600, emit, clock=lambda: 5.0)
    for _ in range(5):
        await run.take(final=False)
    await run.finish()
    assert [(d["seq"], d["sha256"][0], d["final"]) for d in sent] == [(1, "a", False), (2, "b", False), (2, "b", True)]
    assert sent[0]["at"] == 5.0 and sent[0]["size"] == 10
