"""Real `nunet-dms` processes for tests: each from its own config file, data dir and free port."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dms.app import JOB_DISKS_NAME, instance_name
from dms.executor.docker import DockerExecutor

DAEMON = [sys.executable, "-m", "dms"]
CLI = [sys.executable, "-m", "dms.cli"]


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range (32768 and up here).

    A port the kernel hands out for `bind(0)` comes from the same range as the source ports of outgoing
    connections, so between this call and the daemon's bind a client could take it (seen once: a test's
    REST call reached another daemon's libp2p listener). Below that range only another `free_port` competes.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port found between 10000 and {low}")


def write_config(path: Path, data_dir: Path, port: int, **sections: dict[str, Any]) -> Path:
    """A config on loopback only: REST on `port`, libp2p on another free port."""
    cfg: dict[str, Any] = {
        "general": {"data_dir": str(data_dir)},
        "rest": {"addr": "127.0.0.1", "port": port},
        "p2p": {"listen_address": [f"/ip4/127.0.0.1/tcp/{free_port()}"], "heartbeat_s": 1},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path.write_text(json.dumps(cfg, indent=2))
    return path


class DmsProcess:
    """One daemon process. `start()` waits until its REST API answers."""

    def __init__(self, root: Path, name: str = "dms", port: int | None = None, **sections: dict[str, Any]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.data_dir = root / f"{name}-data"
        self.config = write_config(root / f"{name}.json", self.data_dir, self.port, **sections)
        self.log_path = root / f"{name}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "NOTIFY_SOCKET", "JOURNAL_STREAM"))}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([*DAEMON, "--config", str(self.config)], stdout=log, stderr=log, env=env)
        return self.proc

    def start(self, timeout: float = 30.0) -> DmsProcess:
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nunet-dms exited with {proc.returncode}: {self.log()}")
            try:
                self.get("/api/v1/onboarding/status")
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nunet-dms not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.load(r)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill the daemon, then remove what it leaves (as its next start would): a test's daemon is not
        started again, and its jobs' containers, volumes and loop devices would outlive the test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        reap(instance_name(self.data_dir), self.data_dir / JOB_DISKS_NAME)


def reap(instance: str, disk_dir: Path | None = None) -> None:
    """Remove what a killed daemon (or a bench's own containers) left on the engine, as the daemon's next
    start does: `DockerExecutor.reconcile` for `instance`, whose job disks are in `disk_dir`. Callable from
    inside a test's event loop (it runs on its own loop, in a thread)."""
    async def reconcile() -> None:
        executor = DockerExecutor(instance, disk_dir=disk_dir)
        try:
            await executor.reconcile()
        finally:
            await executor.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, reconcile()).result()


def post(d: DmsProcess, path: str, body: Any = None) -> Any:
    """POST JSON to `d`'s API (`path` under /api/v1); the parsed answer. HTTP errors raise HTTPError."""
    req = urllib.request.Request(
        d.url + "/api/v1" + path, data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """`check()`'s first truthy value, polled every 0.1 s; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


async def eventually(check: Callable[[], Any | Awaitable[Any]], within_s: float, what: str) -> Any:
    """`wait_for` from a test's event loop: `check()` (or what it awaits to) polled every 0.05 s without
    blocking the loop; its first truthy value, or AssertionError naming `what` after `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within_s} s: {what}")


def run_cli(*args: str, dms: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, *(["--dms", dms] if dms else []), *args]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
