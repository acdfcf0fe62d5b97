"""One py-libp2p stream, 32 MiB, with and without dms.network.fastpath, vs a plain TCP copy of the same bytes.

Each variant runs in its own process (the patch is process-wide): two hosts built by
`dms.network.host.build_host` (Noise, yamux, TCP on 127.0.0.1), connected, one stream; the sender writes
the bytes in 1 MiB writes and closes, the receiver reads everything yamux holds at each read (as
`dms.network.streams` does). Timed from the first write to the last byte read. "plain" is py-libp2p
0.8.1 as installed (the host is built the same way, then the functions the fast path replaces are put
back). The floor is bench/floor.py's: a sender process writing into one loopback TCP connection,
this process receiving into a file. Rounds interleave the three; medians reported. No hashing, no disk on
the libp2p side: this isolates the transport.

Run: .venv/bin/python bench/libp2p_stream.py [--mib 32] [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_results, load_note
from floor import ratio_table, tcp_copy


def child(variant: str, mib: int) -> float:
    """Seconds to move `mib` MiB over one stream between two hosts in this process."""
    import multiaddr  # type: ignore[import-untyped]
    import trio
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.stream.exceptions import StreamEOF
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from dms.network import fastpath
    from dms.network.host import build_host
    from dms.network.settings import NetworkSettings

    if variant == "plain":
        originals = _originals()
    proto = TProtocol("/dms-bench/sink/1.0.0")
    data = os.urandom(mib << 20)

    async def run() -> float:
        settings = NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",))
        a = build_host(settings, create_new_key_pair(), print, print)
        b = build_host(settings, create_new_key_pair(), print, print)
        if variant == "plain":
            _restore(originals)
        assert fastpath.is_applied()  # and, for "plain", undone just above
        done = trio.Event()
        got = 0

        async def sink(stream: object) -> None:
            nonlocal got
            while True:
                try:
                    chunk = await stream.read(16 << 20)  # type: ignore[attr-defined]
                except StreamEOF:
                    break
                if not chunk:
                    break
                got += len(chunk)
            done.set()

        a.set_stream_handler(proto, sink)
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with a.run(listen), b.run(listen):
            addr = str(a.get_addrs()[0])
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{a.get_id()}"
            await b.connect(info_from_p2p_addr(multiaddr.Multiaddr(full)))
            stream = await b.new_stream(a.get_id(), [proto])
            view = memoryview(data)
            t0 = time.perf_counter()
            for start in range(0, len(data), 1 << 20):
                await stream.write(bytes(view[start : start + (1 << 20)]))
            await stream.close()
            await done.wait()
            elapsed = time.perf_counter() - t0
            assert got == len(data), got
            await a.close()
            await b.close()
            return elapsed

    return trio.run(run)


def _originals() -> list[tuple[object, str, object]]:
    """py-libp2p's own functions that fastpath.apply replaces (taken before any host is built)."""
    from libp2p.protocol_muxer import multiselect_client as ms
    from libp2p.security.noise import io as nio
    from libp2p.stream_muxer.yamux import yamux as y

    names = [
        (nio.NoiseTransportReadWriter, "read_msg"),
        (nio.NoiseTransportReadWriter, "write_msg"),
        (y.YamuxStream, "write"),
        (y.Yamux, "_write_frame"),
        (y.Yamux, "_read_data_body"),
        (y.YamuxStream, "_auto_tune_and_send_window_update"),
        (y, "read_exactly"),
        (ms.MultiselectClient, "select_one_of"),
    ]
    return [(owner, name, getattr(owner, name)) for owner, name in names]


def _restore(originals: list[tuple[object, str, object]]) -> None:
    for owner, name, fn in originals:
        setattr(owner, name, fn)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", choices=["plain", "patched"])
    ap.add_argument("--write", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()
    if args.child:
        print(child(args.child, args.mib))
        return
    note = load_note()
    times: dict[str, list[float]] = {"tcp": [], "plain": [], "patched": []}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.bin"
        src.write_bytes(os.urandom(args.mib << 20))
        for _ in range(args.rounds):
            times["tcp"].append(tcp_copy(src, Path(tmp) / "dst.bin"))
            for variant in ("plain", "patched"):
                cmd = [sys.executable, __file__, "--child", variant, "--mib", str(args.mib)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
                times[variant].append(float(out.strip().splitlines()[-1]))

    title = f"One libp2p stream: {args.mib} MiB, py-libp2p 0.8.1 with and without dms.network.fastpath"
    rows = [
        ("libp2p stream, py-libp2p 0.8.1 as installed", times["plain"]),
        ("libp2p stream, with dms.network.fastpath", times["patched"]),
    ]
    text = "\n".join(ratio_table(title, __doc__, note, args.mib, times["tcp"], rows))
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()
