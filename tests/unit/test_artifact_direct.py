"""The direct path's two ends (dms/artifacts/direct.py) on real loopback sockets, in threads."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dms.artifacts import direct
from dms.artifacts.direct import DirectFailed, Offer, Receiver, Sender, listen_host


def run_sender(sender: Sender, path: Path, offset: int, size: int) -> dict[str, Any]:
    """Start `sender.send` in a thread; the dict gets `sent` or `error` when it ends."""
    result: dict[str, Any] = {}

    def go() -> None:
        try:
            result["sent"] = sender.send(path, offset, size, 5.0)
        except Exception as exc:  # the test reads it
            result["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    result["thread"] = thread
    return result


@pytest.mark.parametrize(
    ("size", "offset"),
    [
        (3 * direct.FRAME + 12345, 777),  # several frames and a short last one
        # Over one map (the sender maps WINDOW bytes at a time) from inside a page past the first allocation
        # granule, and more frames than the receiver's RING buffers: both wrap around.
        (direct.WINDOW + (direct.RING - 1) * direct.FRAME + 4321, 2 * 4096 + 777),
    ],
)
def test_bytes_from_an_offset_arrive_whole_and_hashed(tmp_path: Path, size: int, offset: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    sender = Sender("127.0.0.1")
    result = run_sender(sender, path, offset, len(data))
    out, digest = io.BytesIO(), hashlib.sha256()
    got = Receiver("127.0.0.1", sender.offer).receive(out, digest, len(data) - offset, 5.0)
    result["thread"].join(5)
    assert got == result["sent"] == len(data) - offset
    assert out.getvalue() == data[offset:]
    assert digest.hexdigest() == hashlib.sha256(data[offset:]).hexdigest()
    assert sender.strangers == 0


def test_a_file_shorter_than_asked_is_sent_as_it_is_and_the_receiver_sees_the_early_end(tmp_path: Path) -> None:
    data = os.urandom(direct.FRAME + 10)
    path = tmp_path / "blob"
    path.write_bytes(data)
    sender = Sender("127.0.0.1")
    result = run_sender(sender, path, 0, len(data) + 5000)  # the store's size is never larger; no crash if it were
    out = io.BytesIO()
    assert Receiver("127.0.0.1", sender.offer).receive(out, hashlib.sha256(), len(data) + 5000, 5.0) == len(data)
    result["thread"].join(5)
    assert result["sent"] == len(data) and out.getvalue() == data


def test_a_stranger_without_the_token_gets_nothing_and_the_asker_still_gets_its_bytes(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    sender = Sender("127.0.0.1")
    result = run_sender(sender, path, 0, len(data))
    with socket.create_connection(("127.0.0.1", sender.offer.port), timeout=5) as stranger:
        stranger.sendall(b"x" * direct.TOKEN_BYTES)
        assert stranger.recv(1024) == b""  # closed without a byte
    out = io.BytesIO()
    assert Receiver("127.0.0.1", sender.offer).receive(out, hashlib.sha256(), len(data), 5.0) == len(data)
    result["thread"].join(5)
    assert out.getvalue() == data and sender.strangers == 1


def test_a_changed_frame_fails_its_tag_and_nothing_of_it_is_kept() -> None:
    """A holder that seals with another key (or bytes changed on the way): the frame is refused."""
    offer = Offer(0, os.urandom(direct.KEY_BYTES), os.urandom(direct.TOKEN_BYTES))
    server = socket.create_server(("127.0.0.1", 0))
    offer = Offer(server.getsockname()[1], offer.key, offer.token)

    def hostile() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(direct.TOKEN_BYTES)
            good = AESGCM(offer.key).encrypt((0).to_bytes(12, "big"), b"a" * 1000, None)
            forged = AESGCM(os.urandom(32)).encrypt((1).to_bytes(12, "big"), b"b" * 1000, None)
            for sealed in (good, forged):
                conn.sendall(len(sealed).to_bytes(4, "big") + sealed)

    thread = threading.Thread(target=hostile)
    thread.start()
    out = io.BytesIO()
    with pytest.raises(DirectFailed, match="frame 1 failed its authentication tag") as err:
        Receiver("127.0.0.1", offer).receive(out, hashlib.sha256(), 2000, 5.0)
    thread.join(5)
    server.close()
    assert err.value.forged and err.value.got == 1000
    assert out.getvalue() == b"a" * 1000  # the verified frame only


def test_nothing_listening_is_a_direct_failure_with_no_bytes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    offer = Offer(port, os.urandom(direct.KEY_BYTES), os.urandom(direct.TOKEN_BYTES))
    with pytest.raises(DirectFailed, match="direct connection") as err:
        Receiver("127.0.0.1", offer).receive(io.BytesIO(), hashlib.sha256(), 10, 5.0)
    assert err.value.got == 0 and not err.value.forged


def test_close_from_another_thread_ends_a_waiting_sender_at_once(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x")
    sender = Sender("127.0.0.1")
    result = run_sender(sender, path, 0, 1)
    sender.close()
    result["thread"].join(2)  # well before ACCEPT_TIMEOUT_S
    assert not result["thread"].is_alive() and isinstance(result["error"], OSError)


@pytest.mark.parametrize(
    ("offer", "problem"),
    [
        ("nope", "not an object"),
        ({"port": 0, "key": "00" * 32, "token": "00" * 16}, "bad port"),
        ({"port": True, "key": "00" * 32, "token": "00" * 16}, "bad port"),
        ({"port": 9, "key": "zz", "token": "00" * 16}, "not hex"),
        ({"port": 9, "key": "00" * 16, "token": "00" * 16}, "wrong length"),
        ({"port": 9, "key": "00" * 32}, "not hex"),
    ],
)
def test_a_bad_offer_is_named(offer: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Offer.from_json(offer)


def test_an_offer_survives_its_json() -> None:
    offer = Offer(4242, os.urandom(direct.KEY_BYTES), os.urandom(direct.TOKEN_BYTES))
    assert Offer.from_json(offer.to_json()) == offer


def test_direct_listeners_open_on_the_libp2p_listen_host() -> None:
    assert listen_host("/ip4/0.0.0.0/tcp/9000") == "0.0.0.0"
    assert listen_host("/ip6/::1/tcp/9000") == "::1"
    with pytest.raises(ValueError):
        listen_host("/dns/example/tcp/1")


class FailingSink(io.BytesIO):
    """A file whose disk fills after `ok` writes."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok

    def write(self, data: Any, /) -> int:
        if self.ok == 0:
            raise OSError(28, "No space left on device")
        self.ok -= 1
        return super().write(data)


def test_a_failed_write_fails_the_transfer_even_in_its_last_frames(tmp_path: Path) -> None:
    """Writes lag the receive by up to RING frames: one that fails near the end still fails the transfer,
    rather than returning every byte as received (and hashed) with some of them never written."""
    data = os.urandom(3 * direct.FRAME + 999)
    path = tmp_path / "blob"
    path.write_bytes(data)
    sender = Sender("127.0.0.1")
    result = run_sender(sender, path, 0, len(data))
    sink = FailingSink(ok=3)
    with pytest.raises(DirectFailed, match="No space left"):
        Receiver("127.0.0.1", sender.offer).receive(sink, hashlib.sha256(), len(data), 5.0)
    result["thread"].join(5)
    assert sink.getvalue() == data[: 3 * direct.FRAME]  # what was written is a prefix: a resume goes on from it
