"""What the web layer gets from the composition root: the domain services, under one typed AppKey."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dms.config import Settings
from dms.onboarding.service import OnboardingService


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    onboarding: OnboardingService
    database_path: str
    version: str


CONTEXT = web.AppKey("context", ApiContext)


def ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
