"""Payment fixtures: a fresh in-process chain per test, with our escrow deployed on it."""

from __future__ import annotations

import pytest
from web3.contract import Contract

from tests.payments.tester import LocalChain


@pytest.fixture
def chain() -> LocalChain:
    return LocalChain()


@pytest.fixture
def escrow(chain: LocalChain) -> Contract:
    return chain.deploy_escrow(refund_delay_s=3600)
