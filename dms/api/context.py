"""What the web layer gets from the composition root: the domain services, under one typed AppKey."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from dms.artifacts import ArtifactStore, ArtifactTransfer
from dms.artifacts.checkpoints import JobCheckpoints
from dms.artifacts.outputs import JobOutputs
from dms.config import Settings
from dms.executor.modules import ModuleStore
from dms.jobs.provider import ProviderService
from dms.jobs.requester import RequesterService
from dms.network import P2PNode
from dms.onboarding.service import OnboardingService
from dms.store.jobs import TransactionLog


@dataclass
class DefaultPeer:
    """NuNet's default deployment-request receiver (`/peers/depreq`): memory only, as in NuNet.
    Written only by that endpoint; read by NuNet-shaped request-service."""

    peer_id: str | None = None


@dataclass
class NuNetQuote:
    """The quote of NuNet's last request-service: as in NuNet, a new request replaces it while unpaid, so
    an unchanged dashboard's send-status (which names no job) finds exactly one quote. Written only by
    NuNet-shaped request-service."""

    job_id: str | None = None


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    onboarding: OnboardingService
    provider: ProviderService
    requester: RequesterService
    node: P2PNode
    transactions: TransactionLog
    database_path: str
    version: str
    artifacts: ArtifactStore
    transfer: ArtifactTransfer
    outputs: JobOutputs
    checkpoints: JobCheckpoints
    default_peer: DefaultPeer = field(default_factory=DefaultPeer)
    nunet_quote: NuNetQuote = field(default_factory=NuNetQuote)
    modules: ModuleStore | None = None


CONTEXT = web.AppKey("context", ApiContext)


def ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
