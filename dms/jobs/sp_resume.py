"""Resume after a provider's loss (docs/artifacts.md): a job that asked `resume: "on-failure"` whose
provider is lost runs again on another provider, on the same job id, from its latest checkpoint.

`resume_elsewhere` is a helper of the job's owner task (`sp_job.py`): it only reads and offers, and
reports back `Resumed` (the new provider accepted; the owner stores the move and follows it) or
`NotResumed` (the owner fails the job). Payment mode none only: with escrow a new run would need its
own deposit, which is not asked for yet.
"""

from __future__ import annotations

import logging
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

Replacements = Callable[[JobSpec, frozenset[str]], Awaitable[list[tuple[str, int]]]]
"""(the job's spec, the providers that ran it) -> the providers that could run it now, best first, with
their prices (bounded by the SP's attempts)."""
Latest = Callable[[str], tuple[int, str] | None]
"""job id -> its newest checkpoint held here (number, sha256), if any."""


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


def runs_of(row: SPJobRow) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = row.quote.get("runs") or [{"run": 1, "compute_provider": row.cp_peer_id}]
    return runs


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
    for peer, price in await replacements(spec, gone):
        deploy = Deploy(type="deploy", job_id=row.job_id, spec=spec, payment=Payment(price=price))
        answer = await offer(dialer, peer, deploy, modules)
        if isinstance(answer, str):
            log.info("job %s: %s did not take it over: %s", row.job_id, peer, answer)
            continue
        run = {"run": len(runs) + 1, "compute_provider": peer, "checkpoint": last[0] if last else None}
        submit(Resumed(answer, peer, run, reason))
        return
    submit(NotResumed(f"{reason}; no other provider took it over"))
