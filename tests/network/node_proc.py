"""A P2PNode in its own process, driven over stdin/stdout, for tests that need real separate processes.

Child (`python -m tests.network.node_proc --listen ... [--bootstrap ...] --identity FILE ...`): starts the
node and prints `{"event": "ready", "peer_id": ..., "addrs": [...]}` (or `{"event": "error", "message": ...}`
and exits 2), then answers one JSON line per JSON command line on stdin:

    {"cmd": "peers"}                  -> {"peers": {peer_id: {"seq", "cpu_mhz", "channel", "addrs", "age_s", ...}}}
    {"cmd": "advert", "advert": {...} | null} -> {"ok": true}
    {"cmd": "ping", "peer_id": ...}   -> {"rtt_s": float} | {"error": {"type", "message"}}
    {"cmd": "connected"}              -> {"connected": [peer_id, ...]}
    {"cmd": "metrics"}                -> {"metrics": {...}}
    {"cmd": "stop"}                   -> {"ok": true}, then exits 0 (so does end of input)

Parent: `NodeProc` spawns one and wraps those commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dms.errors import DmsError
from dms.network import Advert, GpuOffer, NetworkSettings, P2PNode

DEFAULT_ADVERT: dict[str, Any] = {
    "channel": "nunet-test",
    "cpu_mhz": 2000,
    "cores": 2,
    "memory_mb": 1024,
    "disk_mb": 10_000,
    "ntx_price": 1000,
    "payment_addr": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "executors": ["docker"],
    "gpus": [],
}


def advert_from(d: dict[str, Any]) -> Advert:
    return Advert(
        channel=d["channel"],
        cpu_mhz=d["cpu_mhz"],
        cores=d["cores"],
        memory_mb=d["memory_mb"],
        disk_mb=d["disk_mb"],
        ntx_price=d["ntx_price"],
        payment_addr=d["payment_addr"],
        executors=tuple(d["executors"]),
        gpus=tuple(GpuOffer(**g) for g in d["gpus"]),
    )


# ----- child -----


async def _serve(node: P2PNode, out: Callable[[dict[str, Any]], None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "peers":
                out(
                    {
                        "peers": {
                            v.peer_id: {
                                "seq": v.record.seq,
                                "cpu_mhz": v.record.advert.cpu_mhz,
                                "channel": v.record.advert.channel,
                                "addrs": list(v.record.addrs),
                                "age_s": v.age_s,
                                "connected": v.connected,
                                "rtt_s": v.rtt_s,
                            }
                            for v in node.peers()
                        }
                    }
                )
            elif cmd == "advert":
                await node.advertise(advert_from(req["advert"]) if req["advert"] else None)
                out({"ok": True})
            elif cmd == "ping":
                out({"rtt_s": await node.ping(req["peer_id"])})
            elif cmd == "connected":
                out({"connected": [c.peer_id for c in await node.connected()]})
            elif cmd == "metrics":
                out({"metrics": dataclasses.asdict(node.metrics)})
            elif cmd == "stop":
                out({"ok": True})
                return
            else:
                out({"error": {"type": "UnknownCommand", "message": cmd}})
        except DmsError as e:
            out({"error": {"type": type(e).__name__, "message": str(e)}})


async def _child(args: argparse.Namespace) -> int:
    def out(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    settings = NetworkSettings(
        listen_addresses=tuple(args.listen),
        bootstrap_peers=tuple(args.bootstrap),
        channel=args.channel,
        heartbeat_s=args.heartbeat,
        allowed_peers=tuple(args.allow),
        record_refresh_s=args.refresh,
        conn_low=args.conn_low,
        conn_high=args.conn_high,
    )
    node = P2PNode(settings, identity_path=Path(args.identity), version="test")
    try:
        await node.start()
    except DmsError as e:
        out({"event": "error", "message": str(e)})
        return 2
    try:
        if args.advert:
            await node.advertise(advert_from(json.loads(args.advert)))
        out({"event": "ready", "peer_id": node.peer_id, "addrs": node.addrs})
        await _serve(node, out)
    finally:
        await node.stop()
    return 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", action="append", required=True)
    p.add_argument("--bootstrap", action="append", default=[])
    p.add_argument("--allow", action="append", default=[])
    p.add_argument("--identity", required=True)
    p.add_argument("--channel", default="nunet-test")
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--advert", help="JSON of an advert to publish at start")
    p.add_argument("--refresh", type=float, default=60.0)
    p.add_argument("--conn-low", type=int, default=3)
    p.add_argument("--conn-high", type=int, default=5)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    sys.exit(asyncio.run(_child(args)))


# ----- parent -----


class NodeProc:
    """One node process: `start()` waits for it to listen; every call answers within `timeout`."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        port: int = 0,
        bootstrap: tuple[str, ...] = (),
        allow: tuple[str, ...] = (),
        channel: str = "nunet-test",
        heartbeat: float = 1.0,
        advert: dict[str, Any] | None = DEFAULT_ADVERT,
        refresh: float = 60.0,
        conns: tuple[int, int] = (3, 5),
    ) -> None:
        self.name = name
        self.identity = root / f"{name}.key"
        self.log_path = root / f"{name}.log"
        self.heartbeat = heartbeat
        self.port = port
        self.bootstrap = bootstrap
        self.allow = allow
        self.channel = channel
        self.advert = advert
        self.refresh = refresh
        self.conns = conns
        self.proc: subprocess.Popen[str] | None = None
        self.peer_id = ""
        self.addrs: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def addr(self) -> str:
        """The first dialable address, with /p2p/<peer id>."""
        return self.addrs[0]

    def start(self, timeout: float = 30.0) -> NodeProc:
        cmd = [sys.executable, "-m", "tests.network.node_proc", "--listen", f"/ip4/127.0.0.1/tcp/{self.port}"]
        cmd += ["--identity", str(self.identity), "--heartbeat", str(self.heartbeat), "--channel", self.channel]
        cmd += ["--refresh", str(self.refresh), "--conn-low", str(self.conns[0]), "--conn-high", str(self.conns[1])]
        for b in self.bootstrap:
            cmd += ["--bootstrap", b]
        for a in self.allow:
            cmd += ["--allow", a]
        if self.advert is not None:
            cmd += ["--advert", json.dumps(self.advert)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIBP2P_DEBUG")}
        log = self.log_path.open("a")
        self._lines = queue.Queue()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        log.close()
        threading.Thread(target=self._read, args=(self.proc, self._lines), daemon=True).start()
        ready = self._next(timeout)
        if ready.get("event") != "ready":
            raise RuntimeError(f"{self.name} did not start: {ready}\n{self.log()}")
        self.peer_id, self.addrs = ready["peer_id"], ready["addrs"]
        self.port = int(self.addr.split("/")[4])  # a restart keeps the port
        return self

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name} said nothing for {timeout} s\n{self.log()}") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited\n{self.log()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def request(self, cmd: str, timeout: float = 15.0, **kw: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._next(timeout)

    def peers(self) -> dict[str, dict[str, Any]]:
        peers: dict[str, dict[str, Any]] = self.request("peers")["peers"]
        return peers

    def metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = self.request("metrics")["metrics"]
        return metrics

    def set_advert(self, advert: dict[str, Any] | None) -> None:
        assert self.request("advert", advert=advert) == {"ok": True}

    def ping(self, peer_id: str) -> dict[str, Any]:
        return self.request("ping", peer_id=peer_id)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close_input(self) -> None:
        """Ask it to stop (end of input) without waiting: stop many nodes at once with this, then `stop()`."""
        assert self.proc is not None and self.proc.stdin is not None
        if not self.proc.stdin.closed:
            with contextlib.suppress(OSError):  # it is already gone
                self.proc.stdin.close()

    def stop(self, timeout: float = 15.0) -> int:
        """Ask it to stop; SIGKILL when it has not within timeout. Returns the exit code."""
        assert self.proc is not None
        self.close_input()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll `check` until true; return the seconds it took. Raises AssertionError naming `what` on timeout."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(interval)


if __name__ == "__main__":
    main()
