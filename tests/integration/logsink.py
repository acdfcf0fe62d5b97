"""A log sink for executor tests: keeps every chunk an executor hands on, and joins each stream."""

from __future__ import annotations

from dms.executor.base import LogChunk


class Logs:
    def __init__(self) -> None:
        self.chunks: list[LogChunk] = []

    async def __call__(self, chunk: LogChunk) -> None:
        self.chunks.append(chunk)

    @property
    def stdout(self) -> str:
        return "".join(c.stdout for c in self.chunks)

    @property
    def stderr(self) -> str:
        return "".join(c.stderr for c in self.chunks)
