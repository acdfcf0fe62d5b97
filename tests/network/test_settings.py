"""NetworkSettings: every problem is reported, named by field, before anything starts."""

from __future__ import annotations

import pytest

from dms.errors import InvalidInput
from dms.network.settings import NetworkSettings, is_peer_id

PEER = "12D3KooWNmbph5e5NmQUUcor6qU3K6vWqSQmZkx3XDcY1RpC2ff4"


def test_defaults_are_valid() -> None:
    assert NetworkSettings().problems() == []


def test_good_values() -> None:
    NetworkSettings(
        listen_addresses=("/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/9000"),
        bootstrap_peers=(f"/ip4/127.0.0.1/tcp/9000/p2p/{PEER}", f"/dns4/node.example/tcp/9000/p2p/{PEER}"),
        channel="nunet-test",
        psk="ab" * 32,
        allowed_peers=(PEER,),
        heartbeat_s=0.5,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"listen_addresses": ()}, "listen_addresses"),
        ({"listen_addresses": ("/ip4/127.0.0.1/udp/9000/quic-v1",)}, "listen_addresses[0]"),
        ({"listen_addresses": ("/ip4/999.0.0.1/tcp/9000",)}, "listen_addresses[0]"),
        ({"listen_addresses": ("/ip4/127.0.0.1/tcp/70000",)}, "listen_addresses[0]"),
        ({"bootstrap_peers": ("/ip4/127.0.0.1/tcp/9000",)}, "bootstrap_peers[0]"),
        ({"bootstrap_peers": ("/ip4/127.0.0.1/tcp/9000/p2p/abc",)}, "bootstrap_peers[0]"),
        ({"channel": "nunet-nowhere"}, "channel"),
        ({"heartbeat_s": 0}, "heartbeat_s"),
        ({"psk": "short"}, "psk"),
        ({"allowed_peers": ("not-a-peer",)}, "allowed_peers[0]"),
    ],
)
def test_each_problem_names_its_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        NetworkSettings(**kwargs)  # type: ignore[arg-type]
    assert [d["field"] for d in err.value.details] == [field]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (PEER, True),
        ("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", True),
        ("abc", False),  # base58, but not a multihash (libp2p's ID.from_base58 accepts it)
        ("0OIl", False),  # not base58
        ("", False),
    ],
)
def test_is_peer_id(text: str, ok: bool) -> None:
    assert is_peer_id(text) is ok
