"""Daemon set-ups shared by the end-to-end tests and the benches: a provider and an SP, two providers and an
SP. `make(name, **config)` gives a daemon not yet started (the `dms_process` fixture, or a bench's own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.test_daemon_process import onboard
from tests.procs import DmsProcess, wait_for

Make = Callable[..., DmsProcess]


def peer_ids(d: DmsProcess) -> set[str]:
    """The peers in the daemon's table."""
    return {p["peer_id"] for p in d.get("/api/v1/peers/dht/dump")}


def cp_and_sp(
    make: Make, cp_share: float = 0.5, cp: dict[str, Any] | None = None, sp: dict[str, Any] | None = None
) -> tuple[DmsProcess, DmsProcess]:
    """A provider onboarded with `cp_share` of the machine and an SP bootstrapped to it (onboarded too: a
    requester needs its channel), returned once the SP sees the provider. `cp`/`sp`: extra config sections."""
    provider = make("cp", **(cp or {})).start()
    onboard(provider, cp_share)
    me = provider.get("/api/v1/peers/self")
    requester = make("sp", p2p={"bootstrap_peers": [me["addrs"][0]]}, **(sp or {})).start()
    onboard(requester, 0.2)
    wait_for(lambda: me["peer_id"] in peer_ids(requester), 20, "the SP sees the CP")
    return provider, requester


def two_providers(make: Make) -> tuple[list[DmsProcess], list[dict[str, Any]], DmsProcess]:
    """Two providers (0.4 of the machine each) and an SP bootstrapped to both, returned once it sees both:
    (providers, their `/peers/self`, SP)."""
    cps = [make(f"cp{i}").start() for i in (1, 2)]
    for cp in cps:
        onboard(cp, 0.4)
    ids = [cp.get("/api/v1/peers/self") for cp in cps]
    sp = make("sp", p2p={"bootstrap_peers": [i["addrs"][0] for i in ids]}).start()
    onboard(sp, 0.2)
    wait_for(lambda: {i["peer_id"] for i in ids} <= peer_ids(sp), 20, "the SP sees both providers")
    return cps, ids, sp
