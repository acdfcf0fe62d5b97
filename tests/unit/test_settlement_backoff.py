"""The settlement worker's retry schedule (pure)."""

from dms.jobs.settlement import LAST_RETRY_S, backoff


def test_backoff_doubles_from_one_second_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(0) == 1.0
    assert backoff(9) == 256.0 and backoff(10) == LAST_RETRY_S == backoff(1000) == 300.0
