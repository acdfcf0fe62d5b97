"""The pure parts of resuming a paid job (escrow mode): each run's escrow key, the remaining time, the
next run's spec and quote, and the state moves it takes."""

from __future__ import annotations

from typing import Any

import pytest

from dms.jobs.sp_resume import (
    RESUME_SLACK_S,
    ResumeQuoted,
    RunClock,
    next_run,
    remaining_s,
    resume_quote,
    resume_quote_frame,
    run_number,
    run_spec,
)
from dms.jobs.states import CPState, InvalidTransition, SPState, transition
from dms.payments.contract import escrow_job_id_hex, run_key
from dms.store.models import SPJobRow

SHA = "ab" * 32
SPEC: dict[str, Any] = {
    "image": "busybox", "command": ["true"], "resources": {"cpu_mhz": 300, "cores": 0.5, "memory_mb": 32},
    "max_price": 10**18, "duration_s": 100, "checkpoint": {"path": "/workspace", "interval_s": 1},
    "resume": "on-failure",
}  # fmt: skip


def row(quote: dict[str, Any] | None = None) -> SPJobRow:
    q = {"job_id": "j1", "compute_provider": {"peer_id": "cp1", "payment_addr": "0x1"}, "estimated_price": 9,
         "escrow_job_id": escrow_job_id_hex("j1"), **(quote or {})}  # fmt: skip
    return SPJobRow(job_id="j1", state="running", spec=SPEC, quote=q, cp_peer_id="cp1", cp_seq=3)


def test_each_run_is_paid_under_its_own_key() -> None:
    assert run_key("j1", 1) == "j1"
    assert run_key("j1", 2) == "j1/run2" != run_key("j1", 3)
    assert escrow_job_id_hex(run_key("j1", 2)) != escrow_job_id_hex("j1")


def test_remaining_time_is_what_the_checkpoint_does_not_hold() -> None:
    assert remaining_s(100, None) == 100  # unknown: all of it
    assert remaining_s(100, 30.0) == 70 + RESUME_SLACK_S
    assert remaining_s(100, 30.2) == 70 + RESUME_SLACK_S  # rounded up
    assert remaining_s(100, -5.0) == 100  # a provider clock behind: never more than the run had
    assert remaining_s(100, 500.0) == RESUME_SLACK_S  # never less than the slack
    assert remaining_s(1, 0.5) == 1


def test_the_next_run_starts_from_the_newest_checkpoint_for_the_remaining_time() -> None:
    clock = RunClock()
    clock.started(1000.0)
    clock.checkpoint({"sha256": SHA, "at": 1040.0})
    spec, ck = next_run(row(), lambda _job: (4, SHA), clock)
    assert ck == (4, SHA) and spec.restore == SHA and spec.duration_s == 60 + RESUME_SLACK_S
    # an SP that restarted does not know how far the run got: the whole time
    spec, ck = next_run(row(), lambda _job: (4, SHA), RunClock())
    assert spec.duration_s == 100 and spec.restore == SHA
    # no checkpoint: from the start
    spec, ck = next_run(row(), lambda _job: None, clock)
    assert ck is None and spec.restore is None and spec.duration_s == 100


def test_the_resume_quote_and_its_frame() -> None:
    r = row()
    msg = ResumeQuoted("cp2", "0x2", 77, 65, (4, SHA), "compute provider lost: silent")
    escrow = {"escrow_job_id": escrow_job_id_hex(run_key("j1", 2)), "arbiter": "0xa"}
    q = resume_quote(r, msg, escrow, "2030-01-01T00:00:00+00:00")
    assert q["run"] == 2 and q["estimated_price"] == 77 and q["candidates"] == [["cp2", 77]]
    assert q["runs"] == [{"run": 1, "compute_provider": "cp1"}]
    r.quote = q
    assert run_number(r) == 2
    assert run_spec(r).duration_s == 65 and run_spec(r).restore == SHA
    frame = resume_quote_frame(q)
    assert frame["action"] == "job-resume-quote" and "message" not in frame  # beside NuNet's frames
    assert frame["detail"]["run"] == 2 and frame["detail"]["checkpoint"] == 4
    shown = frame["detail"]["quote"]
    assert shown["escrow_job_id"] == escrow["escrow_job_id"] and shown["duration_s"] == 65
    assert shown["compute_provider"] == {"peer_id": "cp2", "payment_addr": "0x2"} and "candidates" not in shown


def test_only_the_sp_may_go_back_to_awaiting_payment() -> None:
    assert transition(SPState.RUNNING, SPState.AWAITING_PAYMENT) == SPState.AWAITING_PAYMENT
    assert transition(SPState.SUBMITTED, SPState.AWAITING_PAYMENT) == SPState.AWAITING_PAYMENT
    assert transition(CPState.RUNNING, CPState.COMPLETED) == CPState.COMPLETED
    with pytest.raises(InvalidTransition):
        transition(SPState.PAID, SPState.AWAITING_PAYMENT)
    with pytest.raises(InvalidTransition):
        transition(SPState.COMPLETED, SPState.AWAITING_PAYMENT)
    with pytest.raises(InvalidTransition):
        transition(CPState.RUNNING, CPState.STARTING)
