"""A job's output within its budget and rate (pure; no Docker, no store)."""

from __future__ import annotations

from dms.jobs.logbudget import LogBudget, LogLimits, Piece


def text(pieces: list[Piece]) -> str:
    return "".join(t for _, t in pieces)


def test_small_output_passes_unchanged_in_order() -> None:
    b = LogBudget(LogLimits(), now=0.0)
    out = b.add("stdout", "hello\n", 0.0) + b.add("stderr", "oops\n", 0.1) + b.add("stdout", "bye\n", 0.2)
    assert out == [("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "bye\n")]
    assert b.end() == []


def test_a_line_longer_than_a_message_is_split_not_dropped() -> None:
    line = "".join(f"{i:06d}" for i in range(50_000)) + "\n"  # 300,001 characters, no newline inside
    b = LogBudget(LogLimits(budget=10**7, rate=10**7, piece=16_384), now=0.0)
    out = b.add("stdout", line, 0.0) + b.end()
    assert text(out) == line
    assert max(len(t) for _, t in out) <= 16_384


def test_a_flood_keeps_head_and_tail_and_marks_the_middle() -> None:
    b = LogBudget(LogLimits(budget=1000, rate=10**9, piece=100), now=0.0)
    flood = "".join(f"{i:05d}\n" for i in range(10_000))  # 60,000 characters
    live = []
    for i in range(0, len(flood), 777):
        live += b.add("stdout", flood[i : i + 777], i / 1e6)
    tail = b.end()
    assert text(live) == flood[:500]  # the head, live
    assert tail[0][0] == "stderr" and "59000 characters of output dropped" in tail[0][1]
    assert text(tail[1:]) == flood[-500:]  # the tail, at the end
    assert b.total == 60_000 and b.dropped_total == 59_000


def test_output_faster_than_the_rate_waits_then_overflows_into_the_tail_with_one_marker() -> None:
    b = LogBudget(LogLimits(budget=10_000, rate=100, piece=50), now=0.0)
    first = b.add("stdout", "a" * 1000, 0.0)
    assert text(first) == "a" * 100  # one second's worth at once
    later = b.add("stdout", "", 3.0)
    assert text(later) == "a" * 100  # the rate caps the burst at one second's worth
    assert b.add("stdout", "b" * 10_000, 3.0) == []  # more than the tail's room (5,000): the head ends here
    assert b.add("stdout", "c" * 10, 9.0) == []  # nothing more goes out live
    rest = b.end()
    assert rest[0][0] == "stderr" and "5810 characters of output dropped" in rest[0][1]
    assert text(rest[1:]) == "b" * 4990 + "c" * 10  # the tail: the last 5,000
    assert sum("dropped" in t for _, t in rest) == 1
