"""Fixtures for the network tests: a factory of node processes, all stopped at the end of the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.network.node_proc import NodeProc


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., NodeProc]]:
    """`spawn(name, **NodeProc options)` starts a node process and waits until it listens."""
    made: list[NodeProc] = []

    def factory(name: str, **kw: Any) -> NodeProc:
        node = NodeProc(tmp_path, name, **kw)
        made.append(node)
        return node.start()

    yield factory
    started = [node for node in made if node.proc is not None]
    for node in started:
        node.close_input()
    for node in started:
        node.stop(timeout=10)
