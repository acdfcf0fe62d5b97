"""The settlement worker's retry schedule and its wait for a quiet moment (pure)."""

import pytest

from dms.jobs.settlement import LAST_RETRY_S, MAX_QUIET_WAIT_S, QUIET_S, backoff, quiet_left


def test_backoff_doubles_from_one_second_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(0) == 1.0
    assert backoff(9) == 256.0 and backoff(10) == LAST_RETRY_S == backoff(1000) == 300.0


def test_new_settlements_wait_for_a_quiet_moment_but_not_for_ever() -> None:
    until = 100.0 + MAX_QUIET_WAIT_S
    assert quiet_left(100.0, 100.0, until) == QUIET_S  # a lone job's: QUIET_S after its end
    assert quiet_left(100.5, 100.4, until) == pytest.approx(QUIET_S - 0.1)  # another just came: it moves on
    assert quiet_left(109.5, 109.4, until) == pytest.approx(0.5)  # a burst that never stops: MAX_QUIET_WAIT_S
    assert quiet_left(101.0, 100.0, until) == 0.0
    assert quiet_left(5.0, float("-inf"), until) == 0.0  # after a start, pending rows go at once
