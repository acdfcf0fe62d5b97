"""What the web layer gets from the composition root: the domain services, under one typed AppKey."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dms.artifacts import ArtifactStore, ArtifactTransfer
from dms.artifacts.checkpoints import JobCheckpoints
from dms.artifacts.outputs import JobOutputs
from dms.config import Settings
from dms.jobs.provider import ProviderService
from dms.jobs.requester import RequesterService
from dms.network import P2PNode
from dms.onboarding.service import OnboardingService
from dms.store.jobs import TransactionLog


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


CONTEXT = web.AppKey("context", ApiContext)


def ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
