"""Pure: how a run's end reads as the job's final state, with the reason shown to the user."""

from __future__ import annotations

from dms.executor.base import EndReason, RunResult
from dms.jobs.states import CPState


def outcome(result: RunResult, memory_mb: int, disk_mb: int = 0) -> tuple[CPState, str | None]:
    """The final state and, for a failure, the reason shown to the user."""
    if result.reason == EndReason.CANCELLED:
        return CPState.CANCELLED, "cancelled"
    if result.reason == EndReason.TIMEOUT:
        return CPState.FAILED, f"timeout: {result.detail}" if result.detail else "timeout"
    if result.reason == EndReason.OOM_KILLED:
        return CPState.FAILED, result.detail or f"killed: out of memory (limit {memory_mb} MB)"
    if result.reason == EndReason.DISK_LIMIT:
        return CPState.FAILED, f"disk limit: the job filled its {disk_mb} MB /workspace (exit code {result.exit_code})"
    if result.exit_code != 0:
        return CPState.FAILED, f"exited with code {result.exit_code}" + (f" ({result.detail})" if result.detail else "")
    return CPState.COMPLETED, None
