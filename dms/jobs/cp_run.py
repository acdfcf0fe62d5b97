"""A run's state on the provider, shared by a fresh run (`provider._run`) and an adopted one
(`cp_restart._resume`), so both end through the same code: the outcome of the executor's result, the
outputs collected, a failure read from an error, then the last logs, the final move, the release, and the
job's folders closed after the result is out (`ProviderService._running`)."""

from __future__ import annotations

from dataclasses import dataclass

from dms.artifacts.jobrun import RunFiles
from dms.artifacts.store import Artifact
from dms.executor.base import RunResult
from dms.jobs.cp_outcome import outcome
from dms.jobs.logbudget import LogBudget
from dms.jobs.spec import JobSpec
from dms.jobs.states import CPState


@dataclass
class RunEnd:
    """What the run's end is stored with; until the executor answers, a run that stops ends as failed."""

    state: CPState
    """The row's state as this run last moved it (the final move is compare-and-set on it)."""
    budget: LogBudget
    files: RunFiles | None = None
    code: int | None = None
    final: CPState = CPState.FAILED
    reason: str | None = "the provider stopped"
    outputs: Artifact | None = None

    def ended(self, result: RunResult, spec: JobSpec) -> None:
        """The executor's answer, read as the job's final state and reason."""
        self.code = result.exit_code
        self.final, self.reason = outcome(result, spec.resources.memory_mb, spec.resources.disk_mb)

    async def collect(self) -> None:
        """The run's outputs; a failure to collect them fails the job with that reason."""
        if self.files is None:
            return
        self.outputs, failure = await self.files.finish()
        if failure:
            self.final, self.reason = CPState.FAILED, failure

    def failed(self, reason: str) -> None:
        self.final, self.reason = CPState.FAILED, reason
