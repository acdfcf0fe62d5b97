"""Host building blocks that need no network: wildcard expansion (reads the interfaces, sends nothing)."""

from __future__ import annotations

import multiaddr  # type: ignore[import-untyped]
import pytest

from dms.network import host
from dms.network.host import expand_wildcards


def test_wildcards_become_the_interfaces_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "interface_addresses", lambda: (["192.0.2.7", "127.0.0.1"], ["fd00::7", "::1"]))
    got = expand_wildcards(
        [
            multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/9000"),
            multiaddr.Multiaddr("/ip6/::/tcp/9000"),
            multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/9001"),
        ]
    )
    assert [str(a) for a in got] == ["/ip4/192.0.2.7/tcp/9000", "/ip6/fd00::7/tcp/9000", "/ip4/127.0.0.1/tcp/9001"]


def test_loopback_is_advertised_only_when_nothing_else_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "interface_addresses", lambda: (["127.0.0.1"], []))
    assert [str(a) for a in expand_wildcards([multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/9000")])] == [
        "/ip4/127.0.0.1/tcp/9000"
    ]


def test_real_interfaces_expand_without_wildcards() -> None:
    got = [str(a) for a in expand_wildcards([multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/9000")])]
    assert got and all("0.0.0.0" not in a and a.endswith("/tcp/9000") for a in got)
