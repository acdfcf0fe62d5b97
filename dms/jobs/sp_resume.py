"""Resume after a provider's loss (docs/artifacts.md): a job that asked `resume: "on-failure"` whose
provider is lost runs again on another provider, on the same job id, from its latest checkpoint.

The helpers here serve the job's owner task (`sp_job.py`): they only read and offer, and report back.
- Payment mode none: `resume_elsewhere` offers the run to the next provider and reports `Resumed` (the
  new provider accepted; the owner stores the move and follows it) or `NotResumed` (the owner fails the job).
- Escrow: a run needs its own deposit under its own escrow job id (`run_key`), so nothing is offered yet:
  `quote_elsewhere` picks the next provider and prices the time the job still needs (`remaining_s`), and
  reports `ResumeQuoted`; the owner settles the lost run, asks the dashboard for the deposit with a
  `job-resume-quote` frame and waits for it as for a first payment; once verified it dispatches the run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dms.executor.modules import ModuleStore
from dms.jobs.link import offer
from dms.jobs.protocol import Deploy, Payment
from dms.jobs.spec import JobSpec
from dms.jobs.transport import Dialer, LineStream
from dms.store.models import SPJobRow

log = logging.getLogger(__name__)

Replacements = Callable[[JobSpec, frozenset[str]], Awaitable[list[tuple[str, int, str]]]]
"""(the job's spec, the providers that ran it) -> the providers that could run it now, best first, with
their prices and payout addresses (bounded by the SP's attempts)."""
Latest = Callable[[str], tuple[int, str] | None]
"""job id -> its newest checkpoint held here (number, sha256), if any."""

RESUME_SLACK_S = 2
"""Added to a resumed run's remaining time: a checkpoint's time is stamped after its copy was taken, and the
job needs a moment to pick up from its files."""


@dataclass(frozen=True)
class Resumed:
    stream: LineStream
    peer: str
    run: dict[str, Any]
    """`{run, compute_provider, checkpoint}`, kept in the quote's `runs` list."""
    reason: str


@dataclass(frozen=True)
class NotResumed:
    reason: str


@dataclass(frozen=True)
class ResumeQuoted:
    """Escrow mode: who could run the job next, for how long and at what price; not offered yet."""

    peer: str
    payment_addr: str
    price: int
    duration_s: int
    checkpoint: tuple[int, str] | None
    reason: str


def runs_of(row: SPJobRow) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = row.quote.get("runs") or [{"run": 1, "compute_provider": row.cp_peer_id}]
    return runs


def run_number(row: SPJobRow) -> int:
    """The run the job's quote and deposit are for now (1 until a resume in escrow mode quoted another)."""
    return int(row.quote.get("run", 1))


def run_spec(row: SPJobRow) -> JobSpec:
    """What the current run is asked to do: the job's spec, with the remaining time and the checkpoint it
    starts from once it resumed in escrow mode (`run_spec` in the quote)."""
    spec = JobSpec.model_validate(row.spec)
    return spec.model_copy(update=row.quote["run_spec"]) if row.quote.get("run_spec") else spec


class RunClock:
    """How far the current run got by each of its checkpoints, on the provider's clock: from its `running`
    status to the checkpoint's time. Kept in the owner's memory (after an SP restart it is unknown)."""

    def __init__(self) -> None:
        self._started: float | None = None
        self._at: dict[str, float] = {}

    def started(self, at: object) -> None:
        self._started, self._at = (float(at) if isinstance(at, int | float) else None), {}

    def checkpoint(self, data: dict[str, Any]) -> None:
        sha, at = data.get("sha256"), data.get("at")
        if isinstance(sha, str) and isinstance(at, int | float):
            self._at[sha] = float(at)

    def done_s(self, sha256: str) -> float | None:
        """Seconds of the run that checkpoint `sha256` holds (None when unknown)."""
        at = self._at.get(sha256)
        return None if at is None or self._started is None else at - self._started


def remaining_s(duration_s: int, done_s: float | None) -> int:
    """Pure: the time a resumed run is quoted and limited to: what its last run was given less what the
    restored checkpoint already holds, plus `RESUME_SLACK_S`; all of it when that is unknown."""
    if done_s is None:
        return duration_s
    done = min(max(done_s, 0.0), float(duration_s))
    return max(min(math.ceil(duration_s - done) + RESUME_SLACK_S, duration_s), 1)


def next_run(row: SPJobRow, latest: Latest, clock: RunClock) -> tuple[JobSpec, tuple[int, str] | None]:
    """The spec of the run that resumes the job (from its newest checkpoint, for the time it still needs)
    and that checkpoint."""
    spec = run_spec(row)
    last = latest(row.job_id)
    if last is None or spec.checkpoint is None:
        return spec.model_copy(update={"restore": None}) if spec.restore else spec, None
    duration = remaining_s(spec.duration_s, clock.done_s(last[1]))
    return spec.model_copy(update={"restore": last[1], "duration_s": duration}), last


async def resume_elsewhere(
    row: SPJobRow,
    reason: str,
    dialer: Dialer,
    replacements: Replacements,
    latest: Latest,
    submit: Callable[[object], None],
    modules: ModuleStore | None = None,
) -> None:
    spec = JobSpec.model_validate(row.spec)
    runs = runs_of(row)
    last = latest(row.job_id)
    if last is not None and spec.checkpoint is not None:
        spec = spec.model_copy(update={"restore": last[1]})
    gone = frozenset(str(r["compute_provider"]) for r in runs)
    for peer, price, _addr in await replacements(spec, gone):
        deploy = Deploy(type="deploy", job_id=row.job_id, spec=spec, payment=Payment(price=price))
        answer = await offer(dialer, peer, deploy, modules)
        if isinstance(answer, str):
            log.info("job %s: %s did not take it over: %s", row.job_id, peer, answer)
            continue
        run = {"run": len(runs) + 1, "compute_provider": peer, "checkpoint": last[0] if last else None}
        submit(Resumed(answer, peer, run, reason))
        return
    submit(NotResumed(f"{reason}; no other provider took it over"))


async def quote_elsewhere(
    row: SPJobRow,
    spec: JobSpec,
    checkpoint: tuple[int, str] | None,
    reason: str,
    replacements: Replacements,
    submit: Callable[[object], None],
) -> None:
    """Escrow mode: the best provider that did not run the job yet, priced for `spec` (the time it still
    needs); `ResumeQuoted`, or `NotResumed` when none fits."""
    gone = frozenset(str(r["compute_provider"]) for r in runs_of(row))
    for peer, price, addr in await replacements(spec, gone):
        submit(ResumeQuoted(peer, addr, price, spec.duration_s, checkpoint, reason))
        return
    submit(NotResumed(f"{reason}; no other provider could take it over"))


def resume_quote(row: SPJobRow, msg: ResumeQuoted, escrow: dict[str, Any], expires_at: str) -> dict[str, Any]:
    """The job's quote for the run that resumes it (escrow mode): the next run's number, provider, price,
    remaining time and escrow job id (`escrow`: the payment gate's quote fields for its `run_key`), with
    the runs so far and the one waiting for its deposit (`pending_run`)."""
    n = run_number(row) + 1
    ck = msg.checkpoint
    return {
        **row.quote,
        "compute_provider": {"peer_id": msg.peer, "payment_addr": msg.payment_addr},
        "estimated_price": msg.price,
        "expires_at": expires_at,
        "candidates": [[msg.peer, msg.price]],
        **escrow,
        "run": n,
        "run_spec": {"duration_s": msg.duration_s, "restore": ck[1] if ck else None},
        "runs": runs_of(row),
        "pending_run": {
            "run": n,
            "compute_provider": msg.peer,
            "checkpoint": ck[0] if ck else None,
            "reason": msg.reason,
        },
    }


def resume_quote_frame(quote: dict[str, Any]) -> dict[str, Any]:
    """`job-resume-quote` (beside NuNet's frames): the dashboard is asked for the new run's deposit."""
    keys = ("job_id", "compute_provider", "estimated_price", "expires_at", "escrow_job_id", "escrow_address",
            "arbiter", "chain_id")  # fmt: skip
    pending = quote["pending_run"]
    shown = {k: quote[k] for k in keys if k in quote} | {"duration_s": quote["run_spec"]["duration_s"]}
    detail = {"run": pending["run"], "checkpoint": pending["checkpoint"], "reason": pending["reason"], "quote": shown}
    return {"action": "job-resume-quote", "detail": detail}
