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
# One table per kind: SPState and CPState members with the same value are equal as strings (StrEnum), so
# one dict keyed by both would let the CP's "running" row overwrite the SP's.
_MOVES: dict[type[JobState], dict[str, set[str]]] = {
    SPState: {
        "quoted": {"awaiting_payment", "paid", *_ENDS[1:]},
        "awaiting_payment": {"paid", *_ENDS[1:]},
        "paid": {"submitted", *_ENDS[1:]},
        # A resumable job whose provider is lost, in escrow mode, waits for its next run's deposit.
        "submitted": {"running", "awaiting_payment", *_ENDS},
        "running": {"awaiting_payment", *_ENDS},
    },
    CPState: {
        "offered": {"admitted", *_ENDS[1:]},
        "admitted": {"starting", *_ENDS[1:]},
        "starting": {"running", *_ENDS[1:]},
        "running": {*_ENDS},
    },
}

S = TypeVar("S", bound=JobState)


def transition(current: S, new: S) -> S:
    """`new` if the move from `current` is allowed; InvalidTransition otherwise (terminal states are final)."""
    if type(current) is not type(new) or new.value not in _MOVES.get(type(current), {}).get(current.value, set()):
        raise InvalidTransition(f"{type(current).__name__} job cannot go from {current} to {new}")
    return new
