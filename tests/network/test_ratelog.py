"""The rate-limited logger: one line per kind per interval, then a count of what was held back."""

from __future__ import annotations

import logging

import pytest

from dms.network.ratelog import RateLimitedLog


def test_logs_once_per_interval_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("test.ratelog"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        assert rl.warning("malformed", "bad record from %s", "a")
        for _ in range(5):
            assert not rl.warning("malformed", "bad record from %s", "b")
        assert rl.warning("oversize", "big record from %s", "c")  # another kind is not held back
        now[0] = 61
        assert rl.warning("malformed", "bad record from %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "bad record from a",
        "big record from c",
        "bad record from d (5 more like it not logged)",
    ]
