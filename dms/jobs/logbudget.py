"""A job's output within a budget: the head goes out live (at a bounded rate), the tail is kept, the middle
is dropped with one marker saying how much. The head ends when half the budget is sent, or when output
comes faster than the rate long enough to overflow the tail's room. Pure: the caller passes the clock and
emits what comes back.

Every piece that comes back is at most `piece` characters, so a message always fits the wire's frame
(16 Ki characters are at most 96 KiB of JSON even when every character needs escaping); a long line is
split, never dropped. Memory is bounded by the tail (`budget / 2`) plus the chunk being added.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

Stream = Literal["stdout", "stderr"]
Piece = tuple[Stream, str]


@dataclass(frozen=True)
class LogLimits:
    budget: int = 10 * 1024 * 1024
    """Characters of a job's output kept and sent in all: half for the head, half for the tail."""
    rate: int = 1024 * 1024
    """Characters per second sent live; what comes faster waits (within the tail's room) or is dropped."""
    piece: int = 16 * 1024
    """Characters per message at most."""


def marker(dropped: int) -> Piece:
    return "stderr", f"\n[dms: {dropped} characters of output dropped here: past the job's log budget or rate]\n"


class LogBudget:
    def __init__(self, limits: LogLimits, now: float) -> None:
        self._limits = limits
        self._head_left = limits.budget // 2
        self._tail_room = limits.budget - limits.budget // 2
        self._pending: deque[Piece] = deque()
        self._pending_len = 0
        self._dropped = 0
        self._tokens = float(limits.rate)
        self._at = now
        self.total = 0
        """Characters the job wrote."""
        self.dropped_total = 0

    def add(self, stream: Stream, text: str, now: float) -> list[Piece]:
        """Take what the job wrote; the pieces to send now."""
        self.total += len(text)
        step = self._limits.piece
        for i in range(0, len(text), step):
            self._pending.append((stream, text[i : i + step]))
        self._pending_len += len(text)
        out = self._drain(now)
        self._trim()
        return out

    def end(self) -> list[Piece]:
        """The job ended: what is left (the tail), after a marker if anything was dropped."""
        out = [marker(self._dropped)] if self._dropped else []
        self._dropped = 0
        out.extend(self._pending)
        self._pending.clear()
        self._pending_len = 0
        return out

    def _trim(self) -> None:
        """Keep at most the tail's room waiting; drop the oldest beyond it. The first drop ends the head:
        from then on the job's output is its tail, sent at its end after one marker."""
        excess = self._pending_len - self._tail_room
        if excess > 0:
            self._head_left = 0
        while excess > 0:
            stream, text = self._pending[0]
            if len(text) <= excess:
                self._pending.popleft()
                cut = len(text)
            else:
                self._pending[0] = (stream, text[excess:])
                cut = excess
            excess -= cut
            self._pending_len -= cut
            self._dropped += cut
            self.dropped_total += cut

    def _drain(self, now: float) -> list[Piece]:
        rate = self._limits.rate
        self._tokens = min(float(rate), self._tokens + (now - self._at) * rate)
        self._at = now
        out: list[Piece] = []
        while self._pending and self._head_left > 0 and self._tokens >= 1:
            if self._dropped:
                out.append(marker(self._dropped))
                self._dropped = 0
            stream, text = self._pending[0]
            n = min(len(text), self._head_left, int(self._tokens))
            if n == len(text):
                self._pending.popleft()
            else:
                self._pending[0] = (stream, text[n:])
            self._pending_len -= n
            self._head_left -= n
            self._tokens -= n
            out.append((stream, text[:n]))
        return out
