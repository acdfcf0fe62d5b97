"""Deposits the payer could refund while the job runs (pure)."""

from dms.jobs.deadline import SLACK_S, min_refund_deadline, too_long


def test_the_deadline_covers_the_run_and_its_settlement() -> None:
    assert min_refund_deadline(60, 1_000.7) == 1_000 + 60 + SLACK_S


def test_durations_the_refund_delay_cannot_cover_are_refused_with_the_limit() -> None:
    assert too_long(60, None) is None  # no escrow
    assert too_long(3600 - SLACK_S, 3600) is None
    why = too_long(3600 - SLACK_S + 1, 3600)
    assert why is not None and f"at most {3600 - SLACK_S} s" in why
    assert "at most 0 s" in (too_long(10, 100) or "")
