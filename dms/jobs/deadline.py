"""How long a deposit must stay out of its payer's reach: the job's whole paid run and its settlement.

A payer may refund an escrow once its deadline passes (deposit time + the contract's refund delay). If that
could happen while the job still runs, the provider would work for nothing, so both sides refuse such a
deposit, and the service provider refuses to quote a duration the refund delay cannot cover.
"""

from __future__ import annotations

SLACK_S = 300
"""Beyond `duration_s`: dispatch, image start, a re-attach or two, and the release being mined."""


def min_refund_deadline(duration_s: int, now: float) -> int:
    """The earliest acceptable payer-refund deadline (unix seconds) for a job paid `now`."""
    return int(now) + duration_s + SLACK_S


def too_long(duration_s: int, refund_delay_s: int | None) -> str | None:
    """Why a duration cannot be quoted with this escrow (None when it can, or there is no escrow)."""
    if refund_delay_s is None or duration_s + SLACK_S <= refund_delay_s:
        return None
    return (
        f"duration_s {duration_s} is too long for this escrow: its payer may refund after {refund_delay_s} s, "
        f"so a job may run at most {max(refund_delay_s - SLACK_S, 0)} s"
    )
