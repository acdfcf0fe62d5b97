"""A py-libp2p host with nothing of dms in it (no fast path), for interoperability tests.

`python -m tests.network.plain_peer [--psk HEX]` listens on 127.0.0.1, prints its full address
(`/ip4/127.0.0.1/tcp/PORT/p2p/ID`) as one line, and serves ECHO_PROTOCOL: it reads a stream to its end,
then writes every byte back in 100 KiB writes and closes. It runs until its stdin closes.
"""

from __future__ import annotations

import argparse
import sys

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

ECHO_PROTOCOL = TProtocol("/dms-test/echo/1.0.0")


async def echo(stream: INetStream) -> None:
    got = bytearray()
    while True:
        try:
            chunk = await stream.read(65536)
        except StreamEOF:
            break
        if not chunk:
            break
        got += chunk
    for start in range(0, len(got), 100 * 1024):
        await stream.write(bytes(got[start : start + 100 * 1024]))
    await stream.close()


async def main(psk: str | None) -> None:
    key_pair = create_new_key_pair()
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        psk=psk,
    )
    host.set_stream_handler(ECHO_PROTOCOL, echo)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        addr = str(host.get_addrs()[0])
        print(addr if "/p2p/" in addr else f"{addr}/p2p/{host.get_id()}", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--psk")
    trio.run(main, ap.parse_args().psk)
