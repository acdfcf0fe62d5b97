"""The onboarding record: what the provider chose to offer the network. One per node."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dms.onboarding.rules import Resources


@dataclass(frozen=True)
class Onboarding:
    channel: str
    payment_addr: str
    ntx_price: int
    """Wei per second per 1,000 MHz of CPU (docs/jobs.md: Price)."""
    reserved: Resources
    is_available: bool
    onboarded_at: datetime
    updated_at: datetime
