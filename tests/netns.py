"""Several hosts on one machine: network namespaces on a private Linux bridge, with real daemons inside.

`Lan(n)` creates n node namespaces and one bridge namespace, all named `dmst-<random>-...`, each node
joined to the bridge by a veth pair (its end `eth0`, an address in a private /24 that no route of this
machine uses, multicast on, so mDNS's 224.0.0.251 crosses the bridge). Nothing here touches the
machine's own interfaces: the veth pairs are created straight inside the namespaces, and traffic stays
on the bridge (docs/testing.md, "Network rules").

`NsDaemon` runs `python -m dms` inside a node's namespace (`ip netns exec`) and talks to its REST API
on that namespace's own loopback: the test process enters the namespace (`setns`) just long enough to
open the TCP connection.

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); without it `Lan.create` raises NetnsError saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import ipaddress
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.procs import write_config

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
NODE_IF = "eth0"
BRIDGE_IF = "br0"
REST_PORT = 8080
P2P_PORT = 9000

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """Namespaces or links could not be set up; the message says which command failed and why."""


def ip(*args: str) -> str:
    """Run `ip ARGS`; NetnsError with its stderr when it fails."""
    try:
        out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise NetnsError("the `ip` command (iproute2) is not installed") from e
    if out.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """This thread inside namespace `ns` for the block; sockets made there stay in it afterwards."""
    with open("/proc/thread-self/ns/net") as home, open(NETNS_DIR / ns) as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 prefix this machine routes (all tables), so a test subnet can avoid them."""
    nets: list[ipaddress.IPv4Network] = []
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in ("local", "broadcast", "unicast", "multicast", "unreachable", "blackhole"):
            words = words[1:]
        if not words:
            continue
        dest = "0.0.0.0/0" if words[0] == "default" else words[0]
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dest, strict=False))
    return nets


def pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.213.X.0/24 that overlaps no route of this machine except a default route."""
    used = [n for n in used_networks() if n.prefixlen > 0]
    for x in random.sample(range(1, 255), 254):
        net = ipaddress.IPv4Network(f"10.213.{x}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError("no free 10.213.X.0/24 subnet: every one overlaps a route of this machine")


@dataclass(frozen=True)
class Node:
    ns: str
    ip: str
    """The node's address on the bridge (its `eth0`)."""


class Lan:
    """N node namespaces on one bridge. Use as a context manager: the namespaces always go at the end."""

    def __init__(self, n: int) -> None:
        self.prefix = f"dmst-{secrets.token_hex(3)}-"
        self.bridge_ns = self.prefix + "br"
        self.subnet = pick_subnet()
        hosts = list(self.subnet.hosts())
        self.nodes = [Node(f"{self.prefix}n{i + 1}", str(hosts[i])) for i in range(n)]
        self._made: list[str] = []

    def __enter__(self) -> Lan:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _add_ns(self, name: str) -> None:
        try:
            ip("netns", "add", name)
        except NetnsError as e:
            raise NetnsError(
                f"cannot create network namespace {name} (these tests need root: CAP_SYS_ADMIN, CAP_NET_ADMIN): {e}"
            ) from e
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def create(self) -> None:
        br = self.bridge_ns
        self._add_ns(br)
        # Bridge without STP (ports forward at once) and without IGMP snooping (multicast floods every port).
        bridge_opts = ["stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"]
        ip("-n", br, "link", "add", BRIDGE_IF, "type", "bridge", *bridge_opts)
        ip("-n", br, "link", "set", BRIDGE_IF, "up")
        for i, node in enumerate(self.nodes):
            self._add_ns(node.ns)
            port = f"p{i + 1}"
            # Both ends are created inside their namespaces: the machine's own link names are never involved.
            ip("link", "add", NODE_IF, "netns", node.ns, "type", "veth", "peer", "name", port, "netns", br)
            ip("-n", br, "link", "set", port, "master", BRIDGE_IF, "multicast", "on", "up")
            ip("-n", node.ns, "addr", "add", f"{node.ip}/{self.subnet.prefixlen}", "dev", NODE_IF)
            ip("-n", node.ns, "link", "set", NODE_IF, "multicast", "on", "up")
            # No default route in a node: multicast (mDNS) needs a route of its own, and it leaves by eth0.
            ip("-n", node.ns, "route", "add", "224.0.0.0/4", "dev", NODE_IF)
        for node in self.nodes:
            self._wait_up(node.ns)

    def _wait_up(self, ns: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "LOWER_UP" in ip("-n", ns, "link", "show", NODE_IF):
                return
            time.sleep(0.05)
        raise NetnsError(f"{NODE_IF} in {ns} is not up after {timeout} s: {ip('-n', ns, 'link', 'show', NODE_IF)}")

    def close(self) -> None:
        """Kill whatever still runs in our namespaces, then delete them (each one we made, errors aside)."""
        for name in reversed(self._made):
            with contextlib.suppress(NetnsError):
                for pid in ip("netns", "pids", name).split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(NetnsError):
                ip("netns", "del", name)
        self._made.clear()

    def exists(self) -> list[str]:
        """Which of this Lan's namespaces exist now (to check the cleanup)."""
        names = {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}
        return sorted(n for n in names if n.startswith(self.prefix))


class _NsConnection(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self) -> None:
        with entered(self._ns):
            super().connect()


class HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def request(
    ns: str, port: int, method: str, path: str, body: Any = None, timeout: float = 10.0, *, as_json: bool = True
) -> Any:
    """A JSON request to 127.0.0.1:`port` inside namespace `ns` (the answer as text with `as_json=False`);
    HTTPError on a status >= 400, OSError when nothing answers."""
    conn = _NsConnection(ns, "127.0.0.1", port, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
    except http.client.HTTPException as e:
        raise OSError(f"bad HTTP answer from {ns}: {e!r}") from e
    finally:
        conn.close()
    if resp.status >= 400:
        raise HTTPError(resp.status, text)
    if not as_json:
        return text
    return json.loads(text) if text else None


class NsDaemon:
    """One `python -m dms` inside a node's namespace: REST on that namespace's 127.0.0.1:8080, libp2p on
    `/ip4/<node ip>/tcp/9000`. Extra config sections are merged in (e.g. `p2p={"mdns": True}`)."""

    def __init__(self, node: Node, root: Path, name: str, **sections: dict[str, Any]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.name = name
        self.port = REST_PORT
        p2p = {"listen_address": [f"/ip4/{node.ip}/tcp/{P2P_PORT}"], "heartbeat_s": 1, **sections.pop("p2p", {})}
        self.config = write_config(root / f"{name}.json", root / f"{name}-data", self.port, p2p=p2p, **sections)
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> NsDaemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "NOTIFY_SOCKET", "JOURNAL_STREAM"))}
        argv = ["ip", "netns", "exec", self.node.ns, sys.executable, "-m", "dms", "--config", str(self.config)]
        with self.log_path.open("ab") as log:
            # `ip netns exec` execs the command (no fork): the pid is the daemon's, and it leads its own group.
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> NsDaemon:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.get("/api/v1/onboarding/status", timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    def get(self, path: str, timeout: float = 10.0) -> Any:
        return request(self.node.ns, self.port, "GET", path, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        return request(self.node.ns, self.port, "POST", path, body if body is not None else {}, timeout=timeout)

    def metric(self, name: str) -> float:
        """A value from the daemon's /metrics (the first sample named exactly `name`)."""
        for line in request(self.node.ns, self.port, "GET", "/metrics", as_json=False).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{self.name} has no metric {name}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGKILL the daemon's process group and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
