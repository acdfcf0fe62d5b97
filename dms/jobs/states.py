"""Job states and the only allowed moves between them. A transition is one guarded function."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar


class InvalidTransition(Exception):
    pass


class JobState(StrEnum):
    def is_terminal(self) -> bool:
        return self.value in ("completed", "failed", "cancelled")


class SPState(JobState):
    """A job as the service provider sees it."""

    QUOTED = "quoted"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    SUBMITTED = "submitted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CPState(JobState):
    """A job as the compute provider runs it."""

    OFFERED = "offered"
    ADMITTED = "admitted"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_ENDS = ("completed", "failed", "cancelled")
_MOVES: dict[JobState, set[str]] = {
    SPState.QUOTED: {"awaiting_payment", "paid", *_ENDS[1:]},
    SPState.AWAITING_PAYMENT: {"paid", *_ENDS[1:]},
    SPState.PAID: {"submitted", *_ENDS[1:]},
    SPState.SUBMITTED: {"running", *_ENDS},
    SPState.RUNNING: {*_ENDS},
    CPState.OFFERED: {"admitted", *_ENDS[1:]},
    CPState.ADMITTED: {"starting", *_ENDS[1:]},
    CPState.STARTING: {"running", *_ENDS[1:]},
    CPState.RUNNING: {*_ENDS},
}

S = TypeVar("S", bound=JobState)


def transition(current: S, new: S) -> S:
    """`new` if the move from `current` is allowed; InvalidTransition otherwise (terminal states are final)."""
    if type(current) is not type(new) or new.value not in _MOVES.get(current, set()):
        raise InvalidTransition(f"{type(current).__name__} job cannot go from {current} to {new}")
    return new
