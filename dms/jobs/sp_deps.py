"""What each SP job's owner (`sp_job.SPJob`) is given: the stores, the network, payments, the settlement
worker's wake-up and the optional collaborators (modules, files, replacements). Built once by the requester
service and shared by every owner; read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dms.executor.modules import ModuleStore
from dms.jobs.feed import EventFeed
from dms.jobs.sp_files import FileHooks
from dms.jobs.sp_resume import Replacements
from dms.jobs.transport import Dialer
from dms.payments.gate import PaymentGate
from dms.store.jobs import JobStore, TransactionLog
from dms.store.models import SPJobRow


@dataclass(frozen=True)
class Deps:
    jobs: JobStore[SPJobRow]
    feed: EventFeed
    dialer: Dialer
    payments: PaymentGate
    transactions: TransactionLog
    heartbeat_s: float
    settlements_due: Callable[[], None]
    """Wakes the settlement worker once a settlement is owed."""
    modules: ModuleStore | None = None
    """Where a wasm job's module comes from when its provider asks for it."""
    files: FileHooks | None = None
    """Outputs and checkpoints of the jobs (None: a node without dms.artifacts)."""
    replacements: Replacements | None = None
    """Who could take over a `resume: on-failure` job whose provider is lost (None: such jobs fail)."""
    quote_ttl_s: float = 600.0
    """How long a quote (also one for a resumed run, escrow mode) waits for its payment."""
