"""The transfer fast path (dms/network/fastpath.py): refused on other py-libp2p versions, and a patched host
still talks to a py-libp2p host that has nothing of dms in it, both ways, with and without a PSK (and a
protocol the peer does not speak is still refused by name).

The plain peer runs in its own process (`tests/network/plain_peer.py`), so its Noise and yamux are
0.8.1's own. 3 MiB each way spans many Noise messages, many yamux frames and several send windows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import multiaddr  # type: ignore[import-untyped]
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr

from dms.network import fastpath
from dms.network.host import build_host
from dms.network.settings import NetworkSettings
from tests.network.plain_peer import ECHO_PROTOCOL

PSK = "ab" * 32


def test_another_py_libp2p_version_is_not_patched(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dms.network.fastpath"):
        assert fastpath.apply(version="0.9.0") is False
    assert "py-libp2p 0.9.0 is installed" in caplog.text and "not applied" in caplog.text
    assert fastpath.apply(version=fastpath.PATCHED_VERSION) is True


def test_the_installed_version_is_the_one_patched() -> None:
    """When py-libp2p is upgraded this fails: re-check fastpath.py's replacements against the new code."""
    assert fastpath.installed_version() == fastpath.PATCHED_VERSION
    assert fastpath.apply() is True and fastpath.is_applied()


@pytest.fixture(params=[None, PSK], ids=["noise", "noise+psk"])
def plain_peer(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    psk: str | None = request.param
    args = [sys.executable, "-m", "tests.network.plain_peer", *(["--psk", psk] if psk else [])]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        addr = proc.stdout.readline().strip()
        assert addr.startswith("/ip4/127.0.0.1/"), addr
        yield addr, psk
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)


async def _echo_through(addr: str, psk: str | None, data: bytes, read_size: int = 1 << 20) -> bytes:
    settings = NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",), psk=psk)
    refusals: list[object] = []
    host = build_host(settings, create_new_key_pair(), refusals.append, refusals.append)
    assert fastpath.is_applied()
    with trio.fail_after(60):
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [ECHO_PROTOCOL])
            view = memoryview(data)
            for start in range(0, len(data), 1 << 20):  # 1 MiB writes: several windows and Noise messages
                await stream.write(bytes(view[start : start + (1 << 20)]))
            await stream.close()  # half-close: the peer reads to the end, then answers
            back = bytearray()
            while len(back) < len(data):
                try:
                    chunk = await stream.read(read_size)
                except StreamEOF:
                    break
                if not chunk:
                    break
                back += chunk
            # a protocol the peer does not speak is refused by name
            with pytest.raises(Exception) as refused:  # libp2p's StreamFailure, caused by the refusal
                await host.new_stream(info.peer_id, [TProtocol("/dms-test/nope/1.0.0")])
            assert "protocols not supported" in str(refused.value.__cause__)
            await host.close()
    assert not refusals
    return bytes(back)


def test_a_patched_host_and_a_plain_one_move_bytes_both_ways(plain_peer: tuple[str, str | None]) -> None:
    addr, psk = plain_peer
    data = os.urandom(3 * 1024 * 1024 + 12345)  # not a multiple of any frame size
    back = trio.run(_echo_through, addr, psk, data)
    assert len(back) == len(data)
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()


def test_small_reads_still_credit_the_sender(plain_peer: tuple[str, str | None]) -> None:
    """The echo comes back in 64-byte reads, each far below CREDIT_MIN (no WINDOW_UPDATE of its own): the
    crumbs are credited once they add up, or the plain peer would stall after its 256 KiB window."""
    addr, psk = plain_peer
    data = os.urandom(300 * 1024 + 7)
    back = trio.run(_echo_through, addr, psk, data, 64)
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
